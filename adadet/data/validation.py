"""A user's COCO data set and its images, with errors that say what to fix.

``load_checked_coco_json`` and ``register_checked_coco_instances`` are Detectron2's
``load_coco_json`` and ``register_coco_instances`` plus the checks that ``load_coco_json``
(v0.6 and main) does not make, or reports only as a bare ``KeyError`` / ``TypeError`` /
``AssertionError`` / ``JSONDecodeError``. They run on the one parse of the file, which
``load_coco_json`` then indexes. No image is decoded. Left to Detectron2, whose messages
name the problem: repeated annotation ids, category ids absent from 'categories', and
polygons of fewer than 3 points (dropped, with a log line). Annotations of images absent
from 'images' stay an error here: Detectron2 drops them with a log line only, and a file
that lost image records would train on part of its data.

A problem that makes the whole file unusable, or would silently train on the wrong data,
raises ``DatasetError`` (a ``ValueError``). A box of width or height <= 0 is dropped with a
``DatasetWarning``, so one broken object among thousands does not stop a run (public data
sets, COCO included, contain a few).

``CheckedDatasetMapper`` does the same for the images, as the data loader reads them.
"""

import collections
import json
import math
import os
import warnings
from typing import List, Optional, Set

import pycocotools.coco
from pycocotools.coco import COCO
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.utils.file_io import PathManager
from PIL import Image

from ..utils.messages import first_few

#: The top-level lists of an instances file, and the fields Detectron2 indexes in them.
REQUIRED_FIELDS = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
#: PIL modes of single-channel images of more than 8 bits (16-bit PNG / TIFF, 32-bit
#: integer or float). Detectron2's reader converts them to RGB by clipping every value
#: above 255, so a 16-bit image would train and evaluate as almost all white.
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class DatasetError(ValueError):
    """A data set file that cannot be used as it is; the message names the file and the fix."""


class DatasetWarning(UserWarning):
    """Annotations dropped while loading a data set; the message names them."""


def _fail(json_file: str, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"{json_file}: {problem}. Fix: {fix}")


def _read(json_file: str) -> dict:
    try:
        with open(json_file, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise _fail(
            json_file,
            "annotation file does not exist",
            "check the path (and the dataset root directory it is under)",
        ) from None
    except ValueError as e:  # JSONDecodeError names the position; UnicodeDecodeError
        raise _fail(
            json_file,
            f"not valid JSON ({e})",
            "the file is truncated or corrupt, or is not the COCO JSON file: regenerate or "
            "re-download it (for the embedded adadet data sets, delete their directory to "
            "regenerate it)",
        ) from e


def _check_structure(json_file: str, data) -> None:
    """The three lists, each non-empty, of objects with the fields Detectron2 indexes, and
    unique image and category ids (Detectron2 checks annotation ids only, and silently
    merges images or categories that share an id)."""
    if not isinstance(data, dict):
        raise _fail(
            json_file,
            f"the top level is a JSON {type(data).__name__}, not an object",
            "a COCO instances file is an object with 'images', 'annotations' and 'categories'",
        )
    missing_keys = [k for k in REQUIRED_FIELDS if k not in data]
    if missing_keys:
        raise _fail(
            json_file,
            f"missing top-level key(s) {', '.join(repr(k) for k in missing_keys)} "
            f"(found: {', '.join(repr(k) for k in data) or 'none'})",
            "a COCO instances file needs 'images', 'annotations' and 'categories' lists; "
            "check that this is an instances file (not captions, panoptic or a results file)",
        )
    for key, required in REQUIRED_FIELDS.items():
        records = data[key]
        if not isinstance(records, list):
            raise _fail(
                json_file,
                f"'{key}' is a {type(records).__name__}, not a list",
                f"store '{key}' as a JSON list of objects",
            )
        if not records:
            raise _fail(
                json_file,
                f"empty dataset: '{key}' is an empty list",
                "check the file was fully generated/exported; a dataset for training or "
                "evaluation needs at least one image, one category and one annotation",
            )
        lacking = collections.defaultdict(list)
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise _fail(
                    json_file,
                    f"'{key}'[{index}] is a {type(record).__name__}, not an object",
                    f"each entry of '{key}' must be a JSON object",
                )
            for field in required:
                if field not in record:
                    lacking[field].append(index)
        if lacking:
            detail = "; ".join(
                f"'{field}' missing in {len(indices)} of them (at positions {first_few(indices)})"
                for field, indices in lacking.items()
            )
            raise _fail(
                json_file, f"incomplete '{key}' records: {detail}", f"add the fields to '{key}'"
            )
        if key == "annotations":
            continue  # repeated annotation ids: load_coco_json refuses them itself
        counts = collections.Counter(record["id"] for record in records)
        duplicates = [value for value, count in counts.items() if count > 1]
        if duplicates:
            raise _fail(
                json_file,
                f"duplicate ids in '{key}': {first_few(duplicates)}",
                f"give every entry of '{key}' its own id",
            )
    image_ids = {image["id"] for image in data["images"]}
    stray = [a for a in data["annotations"] if a["image_id"] not in image_ids]
    if stray:
        raise _fail(
            json_file,
            f"{len(stray)} annotation(s) refer to image ids absent from 'images': "
            + first_few(f"annotation {a['id']} -> image_id {a['image_id']}" for a in stray),
            "add the missing image records, or remove those annotations",
        )


def _check_image_files(json_file: str, image_root: str, images: List[dict]) -> None:
    # A stat per image only: decoding would make loading as slow as a pass over the data.
    missing = [
        os.path.join(image_root, img["file_name"])
        for img in images
        if not os.path.isfile(os.path.join(image_root, img["file_name"]))
    ]
    if missing:
        raise _fail(
            json_file,
            f"{len(missing)} of {len(images)} image files do not exist: {first_few(missing)}",
            f"check image_root ({image_root}) and the images' 'file_name' fields, "
            "or copy the missing images there",
        )


def _dropped_annotations(json_file: str, annotations: List[dict]) -> Set[int]:
    """Ids of annotations with degenerate boxes, with a warning; errors for worse."""
    bad_boxes, malformed_boxes, non_finite, flat_polygons = [], [], [], []
    for ann in annotations:
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            malformed_boxes.append(ann["id"])
            continue
        # Python's JSON reader accepts NaN and Infinity: a broken export, not one odd object
        if _has_non_finite(box) or _has_non_finite(ann.get("segmentation")):
            non_finite.append(ann["id"])
            continue
        if box[2] <= 0 or box[3] <= 0:
            bad_boxes.append(ann["id"])
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list) and any(_is_number(v) for v in segmentation):
            flat_polygons.append(ann["id"])
    for ids, problem, fix in (
        (malformed_boxes, "have a 'bbox' that is not 4 numbers [x, y, width, height]",
         "write each box as a list of 4 numbers in XYWH format"),
        (non_finite, "have a NaN or infinite coordinate in 'bbox' or 'segmentation'",
         "regenerate the annotations from their source (a NaN or inf coordinate comes from a "
         "broken export), or remove those annotations; evaluation reads this file, so they "
         "cannot just be skipped"),
        (flat_polygons, "have a 'segmentation' that is a flat list of numbers",
         "polygons are a list of lists, [[x1, y1, x2, y2, ...], ...], one list per part"),
    ):
        if ids:
            problem = f"{len(ids)} annotation(s) {problem}: annotation ids {first_few(ids)}"
            raise _fail(json_file, problem, fix)
    if bad_boxes:
        warnings.warn(
            f"{json_file}: {len(bad_boxes)} annotation(s) with a degenerate box (width or "
            f"height <= 0) were dropped: annotation ids {first_few(bad_boxes)}. Fix the "
            "annotations to keep these objects.",
            DatasetWarning,
            stacklevel=3,
        )
    return set(bad_boxes)


def _has_non_finite(values) -> bool:
    """A NaN or infinite number anywhere in ``values`` (a number or nested lists)."""
    if isinstance(values, list):
        return any(_has_non_finite(v) for v in values)
    return isinstance(values, float) and not math.isfinite(values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _indexed(data: dict) -> COCO:
    coco = COCO()  # the class itself, imported before load_checked_coco_json replaces it
    coco.dataset = data
    coco.createIndex()
    return coco


def load_checked_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[List[str]] = None,
) -> List[dict]:
    """Detectron2's ``load_coco_json`` (same arguments and result) after the checks above,
    less the annotations dropped with a warning."""
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    data = _read(json_file)
    _check_structure(json_file, data)
    _check_image_files(json_file, image_root, data["images"])
    dropped = _dropped_annotations(json_file, data["annotations"])
    # load_coco_json reads the file with pycocotools' COCO(json_file): for this one call it
    # indexes the parse above instead (a large instances file takes tens of seconds to
    # parse). Not for use from several threads at once.
    pycocotools.coco.COCO = lambda annotation_file: _indexed(data)
    try:
        # The annotation id is not kept by load_coco_json unless asked for: ask, filter, strip.
        extra = list(extra_annotation_keys or [])
        dicts = load_coco_json(json_file, image_root, dataset_name, extra + ["id"])
    finally:
        pycocotools.coco.COCO = COCO
    for record in dicts:
        record["annotations"] = [a for a in record["annotations"] if a["id"] not in dropped]
        if "id" not in extra:
            for ann in record["annotations"]:
                del ann["id"]
    if not any(record["annotations"] for record in dicts):
        raise _fail(
            json_file,
            f"empty dataset: all {len(data['annotations'])} annotations are invalid and were "
            "dropped",
            "fix the boxes reported in the warnings above, and the annotations Detectron2 "
            "drops (polygons with fewer than 3 points)",
        )
    return dicts


def register_checked_coco_instances(
    name: str, metadata: dict, json_file: str, image_root: str
) -> None:
    """Detectron2's ``register_coco_instances``, loading through
    :func:`load_checked_coco_json`: a broken annotation file fails when the data set is
    first loaded, with the problem and the fix, and bad annotations are dropped by id."""
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )


def check_instance_masks(dataset_dicts: List[dict], names) -> None:
    """For a model that learns masks: every object it trains on (``iscrowd`` 0, as
    Detectron2's mapper keeps) has a segmentation. Detectron2 drops an empty
    ``"segmentation": []`` while loading, and a batch whose objects lack masks then stops
    the first step that meets it with ``Cannot find field 'gt_masks'``, maybe deep into
    training; checked over the whole data set before the first iteration instead."""
    lacking, total, files = 0, 0, []
    for record in dataset_dicts:
        objects = [a for a in record.get("annotations", ()) if a.get("iscrowd", 0) == 0]
        missing = sum(1 for a in objects if not a.get("segmentation"))
        total += len(objects)
        if missing:
            lacking += missing
            files.append(os.path.basename(record.get("file_name", "?")))
    if lacking:
        raise DatasetError(
            f"{', '.join(names)}: {lacking} of {total} annotations (in {len(files)} images, e.g. "
            f"{first_few(files, 3)}) have no 'segmentation' (absent or an empty list), and the "
            "model learns a mask for every object. Fix: give those annotations polygons or RLE "
            "masks, or remove them; or train boxes only (MODEL.MASK_ON False; a LazyConfig: a "
            "model without mask head and dataloader.train.mapper.use_instance_mask=False)."
        )


# --------------------------------------------------------------------------- images


def _check_bit_depth(dataset_dict) -> None:
    """Refuse an image of more than 8 bits per channel; reads the header only."""
    path = dataset_dict.get("file_name")
    try:
        with PathManager.open(path, "rb") as f, Image.open(f) as image:
            mode = image.mode
    except OSError:
        return  # not readable at all: the mapper's own read reports it
    if mode in _HIGH_BIT_DEPTH_MODES:
        raise DatasetError(
            f"Image {path} (image_id {dataset_dict.get('image_id')}) has more than 8 bits per "
            f"channel (PIL mode {mode!r}, e.g. a 16-bit grayscale PNG): it would be read with "
            "every value above 255 clipped, i.e. almost all white. Fix: convert it to an 8-bit "
            "image (e.g. cv2.imwrite(path, (cv2.imread(path, cv2.IMREAD_UNCHANGED) // 256)"
            ".astype('uint8')), or rescaled to its own value range) and point the data set at it."
        )


class CheckedDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same constructor and ``from_config``) that turns an image which
    cannot be read (missing, unreadable, not an image, truncated) or has more than 8 bits
    per channel into a :class:`DatasetError` naming the file, its dataset record and the
    fix, instead of PIL's or the file system's bare error from inside a data-loader worker,
    or an image read as all white."""

    def __call__(self, dataset_dict):
        _check_bit_depth(dataset_dict)
        try:
            return super().__call__(dataset_dict)  # it works on a deep copy of the record
        except OSError as e:  # FileNotFoundError, PIL.UnidentifiedImageError, truncation
            raise DatasetError(
                f"Image {dataset_dict.get('file_name')} (image_id "
                f"{dataset_dict.get('image_id')}) could not be read: "
                f"{type(e).__name__}: {e}. Fix: restore the file (download or extract it "
                "again), or remove this image and its annotations from the dataset's "
                "annotation file."
            ) from e
