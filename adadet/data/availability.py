"""Whether the data sets a run names exist, checked before any loader is built: a missing
COCO folder is named with where Detectron2 looked and how to fix it, not found minutes
later as a traceback from a loader worker."""
import os
from typing import Iterable

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["check_datasets_available"]


def _datasets_root() -> str:
    # Where Detectron2's builtin datasets (coco_2017_train, ...) are registered.
    return os.path.abspath(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def _registered_from_files(name: str) -> bool:
    """Whether Detectron2's own registration (register_coco_instances, the builtin COCO /
    LVIS splits) loads this dataset: its files must then exist before training. Datasets
    with their own loader (e.g. adadet's embedded ones, generated on first load) are not."""
    loader = DatasetCatalog[name] if name in DatasetCatalog else None
    return getattr(loader, "__module__", "").startswith("detectron2.")


def check_datasets_available(names: Iterable[str]) -> None:
    """Raise a clear error, before any loader is built, for a dataset that is not
    registered or whose annotation file / image folder (``json_file`` / ``image_root`` of
    a dataset that Detectron2 loads from files) does not exist."""
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise KeyError(
                f"Dataset '{name}' is not registered. Registered: {sorted(registered)}. "
                "Detectron2 registers COCO/LVIS/... on `import detectron2.data`; the embedded "
                "adadet_shapes_* datasets on `import adadet.data`."
            )
        meta = MetadataCatalog.get(name)
        json_file, image_root = meta.get("json_file"), meta.get("image_root")
        if json_file is None or not _registered_from_files(name):
            continue
        json_ok = os.path.isfile(json_file)
        images_ok = image_root is None or os.path.isdir(image_root)
        if json_ok and images_ok:
            continue
        root, env = _datasets_root(), os.getenv("DETECTRON2_DATASETS")
        builtin = os.path.abspath(json_file).startswith(root + os.sep)
        where = "Check the paths the dataset was registered with." if not builtin else (
            f"Detectron2 looks for its builtin datasets under {root} (DETECTRON2_DATASETS="
            f"{env if env else 'unset, so ./datasets of the working directory'}). "
            "For COCO 2017 put coco/annotations/instances_{train,val}2017.json and "
            "coco/{train,val}2017/ there, or set DETECTRON2_DATASETS to the folder that "
            "holds coco/. To try adadet without COCO: "
            "configs/mask_rcnn_ada_r50_embedded_cpu.yaml."
        )
        raise FileNotFoundError(
            f"Dataset '{name}' is missing: annotations {os.path.abspath(json_file)} "
            f"({'found' if json_ok else 'NOT FOUND'}), images "
            f"{os.path.abspath(image_root) if image_root else None} "
            f"({'found' if images_ok else 'NOT FOUND'}). {where}"
        )
