"""Checking a COCO instances file before Detectron2 loads it, with errors that say what to fix.

``load_checked_coco_json`` is a drop-in for Detectron2's ``load_coco_json`` (and
``register_checked_coco_instances`` for its ``register_coco_instances``). It parses the
file once, checks what ``load_coco_json`` (v0.6 and main) does not check, or reports only
as a bare ``KeyError`` / ``AssertionError`` / ``JSONDecodeError``, and hands the parsed file
to ``load_coco_json``. No image is decoded.

A problem that makes the whole file unusable, or would silently train on the wrong data,
raises ``DatasetError`` (a ``ValueError``). An isolated bad annotation (a box of width or
height <= 0) is dropped with a ``DatasetWarning``, so one broken object among thousands
does not stop a run (public data sets, COCO included, contain a few); polygons with fewer
than 3 points are Detectron2's to drop (it does, and logs how many).
"""

import collections
import contextlib
import json
import math
import os
import warnings
from typing import Dict, Iterable, List, Optional, Set

REQUIRED_TOP_LEVEL_KEYS = ("images", "annotations", "categories")
SHOWN_EXAMPLES = 5


class DatasetError(ValueError):
    """A data set file that cannot be used as it is; the message names the file and the fix."""


class DatasetWarning(UserWarning):
    """Annotations dropped while loading a data set; the message names them."""


def _examples(values: Iterable) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:SHOWN_EXAMPLES])
    more = len(values) - SHOWN_EXAMPLES
    return shown + (f" (and {more} more)" if more > 0 else "")


def _fail(json_file: str, problem: str, fix: str) -> DatasetError:
    return DatasetError(f"{json_file}: {problem}. Fix: {fix}")


def read_coco_json(json_file: str) -> dict:
    """Parse ``json_file``, raising DatasetError if it is missing or not a JSON object."""
    if not os.path.isfile(json_file):
        raise _fail(
            json_file,
            "annotation file does not exist",
            "check the path (and the dataset root directory it is under)",
        )
    try:
        with open(json_file, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise _fail(
            json_file,
            f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
            "the file is truncated or corrupt: regenerate or re-download it "
            "(for the embedded adadet data sets, delete their directory to regenerate it)",
        ) from e
    except UnicodeDecodeError as e:
        raise _fail(json_file, f"not UTF-8 text ({e})", "point to the COCO JSON file itself") from e
    if not isinstance(data, dict):
        raise _fail(
            json_file,
            f"the top level is a JSON {type(data).__name__}, not an object",
            "a COCO instances file is an object with 'images', 'annotations' and 'categories'",
        )
    return data


def check_coco_dict(data: dict, json_file: str, image_root: Optional[str] = None) -> Set[int]:
    """Check parsed COCO instances content; return the ids of annotations to drop.

    Raises DatasetError for the problems checked below and warns
    (DatasetWarning) about the dropped annotations. ``image_root`` None skips the check
    that image files exist.
    """
    missing_keys = [k for k in REQUIRED_TOP_LEVEL_KEYS if k not in data]
    if missing_keys:
        raise _fail(
            json_file,
            f"missing top-level key(s) {', '.join(repr(k) for k in missing_keys)} "
            f"(found: {', '.join(repr(k) for k in data) or 'none'})",
            "a COCO instances file needs 'images', 'annotations' and 'categories' lists; "
            "check that this is an instances file (not captions, panoptic or a results file)",
        )
    for key in REQUIRED_TOP_LEVEL_KEYS:
        if not isinstance(data[key], list):
            raise _fail(
                json_file,
                f"'{key}' is a {type(data[key]).__name__}, not a list",
                f"store '{key}' as a JSON list of objects",
            )
    images, annotations, categories = data["images"], data["annotations"], data["categories"]
    for key, records in (
        ("images", images),
        ("categories", categories),
        ("annotations", annotations),
    ):
        if not records:
            raise _fail(
                json_file,
                f"empty dataset: '{key}' is an empty list",
                "check the file was fully generated/exported; a dataset for training or "
                "evaluation needs at least one image, one category and one annotation",
            )

    # Detectron2 checks annotation ids only, and silently merges images or categories
    # that share an id; an unknown image id it drops with a log line only.
    image_ids = _check_records(json_file, "images", images, ("id", "file_name", "height", "width"))
    category_ids = _check_records(json_file, "categories", categories, ("id", "name"))
    _check_records(json_file, "annotations", annotations, ("id", "image_id", "category_id", "bbox"))

    for field, known, key, fix in (
        ("image_id", image_ids, "images",
         "add the missing image records, or remove those annotations"),
        ("category_id", category_ids, "categories",
         "add the missing categories, or fix those annotations' category_id"),
    ):
        stray = [a for a in annotations if a[field] not in known]
        if stray:
            raise _fail(
                json_file,
                f"{len(stray)} annotation(s) refer to {field[:-3]} ids absent from '{key}': "
                + _examples(f"annotation {a['id']} -> {field} {a[field]}" for a in stray),
                fix,
            )

    if image_root is not None:
        _check_image_files(json_file, image_root, images)

    return _dropped_annotations(json_file, annotations)


def _check_records(json_file: str, key: str, records: List, required: Iterable[str]) -> Set:
    """Every record is an object with the required fields and a unique id; return the ids."""
    lacking: Dict[str, List[int]] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _fail(
                json_file,
                f"'{key}'[{index}] is a {type(record).__name__}, not an object",
                f"each entry of '{key}' must be a JSON object",
            )
        for field in required:
            if field not in record:
                lacking.setdefault(field, []).append(index)
    if lacking:
        detail = "; ".join(
            f"'{field}' missing in {len(indices)} of them (at positions {_examples(indices)})"
            for field, indices in lacking.items()
        )
        raise _fail(
            json_file, f"incomplete '{key}' records: {detail}", f"add the fields to '{key}'"
        )
    counts = collections.Counter(record["id"] for record in records)
    duplicates = [value for value, count in counts.items() if count > 1]
    if duplicates:
        raise _fail(
            json_file,
            f"duplicate ids in '{key}': {_examples(duplicates)}",
            f"give every entry of '{key}' its own id",
        )
    return set(counts)


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
            f"{len(missing)} of {len(images)} image files do not exist: {_examples(missing)}",
            f"check image_root ({image_root}) and the images' 'file_name' fields, "
            "or copy the missing images there",
        )


def _dropped_annotations(json_file: str, annotations: List[dict]) -> Set[int]:
    """Ids of annotations with degenerate boxes; warn about them."""
    bad_boxes, malformed_boxes, flat_polygons, non_finite = [], [], [], []
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
    if malformed_boxes:
        raise _fail(
            json_file,
            f"{len(malformed_boxes)} annotation(s) have a 'bbox' that is not 4 numbers "
            f"[x, y, width, height]: annotation ids {_examples(malformed_boxes)}",
            "write each box as a list of 4 numbers in XYWH format",
        )
    if non_finite:
        raise _fail(
            json_file,
            f"{len(non_finite)} annotation(s) have a NaN or infinite coordinate in 'bbox' or "
            f"'segmentation': annotation ids {_examples(non_finite)}",
            "regenerate the annotations from their source (a NaN or inf coordinate comes from a "
            "broken export), or remove those annotations; evaluation reads this file, so they "
            "cannot just be skipped",
        )
    if flat_polygons:
        raise _fail(
            json_file,
            f"{len(flat_polygons)} annotation(s) have a 'segmentation' that is a flat list of "
            f"numbers: annotation ids {_examples(flat_polygons)}",
            "polygons are a list of lists, [[x1, y1, x2, y2, ...], ...], one list per part",
        )
    if bad_boxes:
        warnings.warn(
            f"{json_file}: {len(bad_boxes)} annotation(s) with a degenerate box (width or "
            f"height <= 0) were dropped: annotation ids {_examples(bad_boxes)}. Fix the "
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


def load_checked_coco_json(
    json_file: str,
    image_root: str,
    dataset_name: Optional[str] = None,
    extra_annotation_keys: Optional[List[str]] = None,
) -> List[dict]:
    """Detectron2's ``load_coco_json`` after checking the file (see this module's docstring).

    Same arguments and result as ``detectron2.data.datasets.load_coco_json``, minus the
    annotations reported as dropped.
    """
    from detectron2.data.datasets import load_coco_json

    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    data = read_coco_json(json_file)
    dropped = check_coco_dict(data, json_file, image_root)
    num_annotations = len(data["annotations"])
    # The annotation id is not kept by load_coco_json unless asked for: ask, filter, strip.
    extra = list(extra_annotation_keys or [])
    with _parsed_for_pycocotools(json_file, data):
        dicts = load_coco_json(json_file, image_root, dataset_name, extra + ["id"])
    for record in dicts:
        kept = [a for a in record["annotations"] if a["id"] not in dropped]
        if "id" not in extra:
            for ann in kept:
                del ann["id"]
        record["annotations"] = kept
    if not any(record["annotations"] for record in dicts):
        raise _fail(
            json_file,
            f"empty dataset: all {num_annotations} annotations are invalid and were dropped",
            "fix the boxes reported in the warnings above, and polygons with fewer than "
            "3 points (which Detectron2 drops)",
        )
    return dicts


@contextlib.contextmanager
def _parsed_for_pycocotools(json_file: str, data: dict):
    """While it lasts, pycocotools' ``COCO(json_file)``, which ``load_coco_json`` calls to
    read the file, indexes ``data`` instead of parsing the file again (a large instances
    file takes tens of seconds to parse). Any other file is read as usual. Not for use
    from several threads at once."""
    import pycocotools.coco

    original = pycocotools.coco.COCO
    path = os.path.abspath(json_file)

    class ParsedCOCO(original):
        def __init__(self, annotation_file=None):
            if annotation_file is None or os.path.abspath(annotation_file) != path:
                super().__init__(annotation_file)
                return
            super().__init__()
            self.dataset = data
            self.createIndex()

    pycocotools.coco.COCO = ParsedCOCO
    try:
        yield
    finally:
        pycocotools.coco.COCO = original


def register_checked_coco_instances(
    name: str, metadata: dict, json_file: str, image_root: str
) -> None:
    """Detectron2's ``register_coco_instances``, loading through
    :func:`load_checked_coco_json`: a broken annotation file fails when the data set is
    first loaded, with the problem and the fix, and bad annotations are dropped by id."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )
