"""Data for adadet: the embedded data sets, checked COCO loading and image reading.

Importing this package registers ``adadet_shapes_train``, ``adadet_shapes_val``,
``adadet_polygons_{train,tune,test}`` and ``adadet_photos`` in Detectron2's catalogs (as ``detectron2.data.datasets`` does for its
builtin data sets); their files are generated on first load. See ``embedded.py``.
"""

from .embedded import (
    PHOTOS,
    POLYGONS,
    SHAPES_TRAIN,
    SHAPES_VAL,
    embedded_datasets_root,
    prepare_photos_dataset,
    prepare_shapes_dataset,
    register_embedded_datasets,
)
from .synthesis import POLYGON_CLASSES, SHAPE_CLASSES
from .validation import (
    CheckedDatasetMapper,
    DatasetError,
    DatasetWarning,
    load_checked_coco_json,
    register_checked_coco_instances,
)

__all__ = [
    "PHOTOS",
    "POLYGONS",
    "POLYGON_CLASSES",
    "SHAPES_TRAIN",
    "SHAPES_VAL",
    "SHAPE_CLASSES",
    "CheckedDatasetMapper",
    "DatasetError",
    "DatasetWarning",
    "embedded_datasets_root",
    "load_checked_coco_json",
    "prepare_photos_dataset",
    "prepare_shapes_dataset",
    "register_checked_coco_instances",
    "register_embedded_datasets",
]

register_embedded_datasets()
