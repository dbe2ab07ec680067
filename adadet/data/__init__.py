"""Data for adadet: the embedded data sets (``embedded.py``; importing this package
registers them in Detectron2's catalogs), checked COCO loading and image reading
(``validation.py``), the check that a run's data sets exist (``availability.py``) and the
exactly resumable training loader (``resumable_loader.py``).
"""

from .availability import check_datasets_available
from .embedded import (
    PHOTOS,
    POLYGONS,
    TEXTURES,
    SHAPES_TRAIN,
    SHAPES_VAL,
    embedded_datasets_root,
    prepare_photos_dataset,
    prepare_shapes_dataset,
    register_embedded_datasets,
)
from .synthesis import POLYGON_CLASSES, SHAPE_CLASSES, TEXTURES_SPEC
from .validation import (
    CheckedDatasetMapper,
    DatasetError,
    DatasetWarning,
    load_checked_coco_json,
    register_checked_coco_instances,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]  # as detectron2.data

register_embedded_datasets()
