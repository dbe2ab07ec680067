"""A user's own COCO data set: the checks of the annotation file (each bad input named
with the fix), registration, and images that cannot be read named with the fix (also from
the trainer's data loader)."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from detectron2.data import DatasetCatalog, MetadataCatalog

from adadet.data import (
    CheckedDatasetMapper,
    DatasetError,
    DatasetWarning,
    load_checked_coco_json,
    register_checked_coco_instances,
)
from adadet.engine import ADNTrainer
from engine.engine_tiny_data import tiny_cfg, write_tiny_coco


@pytest.fixture
def own_dataset(tmp_path):
    """Two tiny images registered as a user would, removed from the catalogs after."""
    json_file, image_root = write_tiny_coco(str(tmp_path), "train", 2)
    name = f"adadet_test_own_{tmp_path.name}"
    register_checked_coco_instances(name, {}, json_file, image_root)
    yield name, json_file, image_root
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _image_files(image_root):
    return sorted(os.path.join(image_root, f) for f in os.listdir(image_root))


def test_registration_loads_like_detectron2(own_dataset):
    name, json_file, image_root = own_dataset
    dicts = DatasetCatalog.get(name)
    assert [os.path.basename(d["file_name"]) for d in dicts] == ["train_000.png", "train_001.png"]
    assert all(len(d["annotations"]) == 2 for d in dicts)
    meta = MetadataCatalog.get(name)
    assert meta.thing_classes == ["square", "disc"] and meta.evaluator_type == "coco"
    assert meta.json_file == json_file and meta.image_root == image_root


def test_broken_annotation_file_fails_on_first_load(own_dataset):
    name, json_file, _ = own_dataset
    with open(json_file) as f:
        text = f.read()
    with open(json_file, "w") as f:
        f.write(text[: len(text) // 2])
    with pytest.raises(DatasetError, match="not valid JSON"):
        DatasetCatalog.get(name)


@pytest.mark.parametrize("damage", ["not_an_image", "truncated", "missing"])
def test_unreadable_image_is_named_with_the_fix(own_dataset, damage):
    name, _, image_root = own_dataset
    good, record = DatasetCatalog.get(name)  # loaded while the files are all there
    path = _image_files(image_root)[1]
    if damage == "missing":
        os.remove(path)
    else:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(b"<html>404</html>" if damage == "not_an_image" else data[: len(data) // 2])
    mapper = CheckedDatasetMapper(tiny_cfg(), is_train=True)
    assert mapper(good)["image"].shape[0] == 3
    with pytest.raises(DatasetError, match=rf"Image {path} \(image_id 2\).*Fix: restore"):
        mapper(record)


def test_16_bit_grayscale_png_is_refused_not_read_as_white(own_dataset):
    name, _, image_root = own_dataset
    first, second = DatasetCatalog.get(name)
    path = second["file_name"]
    height, width = second["height"], second["width"]
    ramp = np.linspace(0, 65535, height * width).reshape(height, width).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # a 16-bit grayscale PNG
    with Image.open(path) as image:
        assert image.mode in ("I", "I;16")
    mapper = CheckedDatasetMapper(tiny_cfg(), is_train=False)
    with pytest.raises(
        DatasetError,
        match=rf"Image {path} \(image_id 2\) has more than 8 bits per channel .*Fix: convert",
    ):
        mapper(second)
    Image.fromarray((ramp // 256).astype(np.uint8)).save(path)  # 8-bit grayscale: fine
    assert mapper(second)["image"].shape[0] == 3
    assert mapper(first)["image"].shape[0] == 3


def test_trainer_loader_reports_the_image(own_dataset):
    name, _, image_root = own_dataset
    path = _image_files(image_root)[0]
    with open(path, "wb") as f:
        f.write(b"\x00" * 100)
    cfg = tiny_cfg()
    cfg.DATASETS.TRAIN = (name,)
    with pytest.raises(DatasetError, match=f"Image {path}"):
        next(iter(ADNTrainer.build_train_loader(cfg)))


# -- the annotation file ---------------------------------------------------------------


def _write_coco(tmp_path, mutate=None, with_images=True):
    """A valid 3-image COCO file in tmp_path (after ``mutate(coco)``); returns its path."""
    image_root = tmp_path / "images"
    image_root.mkdir(exist_ok=True)
    square = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    coco = {
        "images": [
            {"id": i, "file_name": f"img{i}.jpg", "height": 40, "width": 40} for i in (1, 2, 3)
        ],
        "annotations": [
            {
                "id": 10 + i,
                "image_id": i,
                "category_id": 1,
                "bbox": [10.0, 10.0, 20.0, 20.0],
                "area": 400.0,
                "segmentation": [list(square)],
                "iscrowd": 0,
            }
            for i in (1, 2, 3)
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    if with_images:
        for img in coco["images"]:
            Image.new("RGB", (40, 40)).save(image_root / img["file_name"])
    if mutate:
        mutate(coco)
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps(coco))
    return str(json_file), str(image_root)


def test_valid_file_loads_like_load_coco_json(tmp_path):
    dicts = load_checked_coco_json(*_write_coco(tmp_path))
    assert [len(d["annotations"]) for d in dicts] == [1, 1, 1]
    assert "id" not in dicts[0]["annotations"][0]


def test_invalid_json_names_the_file_and_position(tmp_path):
    json_file, image_root = _write_coco(tmp_path)
    with open(json_file, "r+") as f:
        text = f.read()
        f.seek(0)
        f.write(text[: len(text) // 2])
        f.truncate()
    with pytest.raises(DatasetError, match=r"instances\.json: not valid JSON .*line 1.*Fix:"):
        load_checked_coco_json(json_file, image_root)
    assert issubclass(DatasetError, ValueError)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(DatasetError, match="absent.json: annotation file does not exist"):
        load_checked_coco_json(str(tmp_path / "absent.json"), str(tmp_path))


def test_missing_top_level_keys_are_named(tmp_path):
    paths = _write_coco(tmp_path, lambda c: (c.pop("annotations"), c.pop("categories")))
    with pytest.raises(
        DatasetError, match="missing top-level key\\(s\\) 'annotations', 'categories'"
    ):
        load_checked_coco_json(*paths)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_empty_dataset_is_an_error(tmp_path, key):
    paths = _write_coco(tmp_path, lambda c: c[key].clear())
    with pytest.raises(DatasetError, match=f"empty dataset: '{key}' is an empty list"):
        load_checked_coco_json(*paths)


def test_annotation_of_a_missing_image_id(tmp_path):
    # load_coco_json would drop it with a log line only
    paths = _write_coco(tmp_path, lambda c: c["annotations"][1].update(image_id=99))
    with pytest.raises(
        DatasetError, match="annotation 12 -> image_id 99.*Fix: add the missing image"
    ):
        load_checked_coco_json(*paths)


def test_annotation_of_a_missing_category_id_is_named_by_detectron2(tmp_path):
    paths = _write_coco(tmp_path, lambda c: c["annotations"][0].update(category_id=7))
    name = "adadet_test_missing_category"
    with pytest.raises(KeyError, match="category_id=7 but this id does not exist in 'categories'"):
        load_checked_coco_json(*paths, name)
    MetadataCatalog.remove(name)


def test_missing_image_files_are_counted_and_named(tmp_path):
    json_file, image_root = _write_coco(tmp_path)
    os.remove(os.path.join(image_root, "img1.jpg"))
    os.remove(os.path.join(image_root, "img3.jpg"))
    with pytest.raises(DatasetError) as error:
        load_checked_coco_json(json_file, image_root)
    message = str(error.value)
    assert "2 of 3 image files do not exist" in message
    assert os.path.join(image_root, "img1.jpg") in message and "img3.jpg" in message
    assert "img2.jpg" not in message and "Fix: check image_root" in message


def test_degenerate_box_is_dropped_with_a_warning(tmp_path):
    paths = _write_coco(tmp_path, lambda c: c["annotations"][1]["bbox"].__setitem__(2, 0.0))
    with pytest.warns(DatasetWarning, match=r"degenerate box .* dropped: annotation ids 12"):
        dicts = load_checked_coco_json(*paths)
    assert [len(d["annotations"]) for d in dicts] == [1, 0, 1]
    assert "id" not in dicts[0]["annotations"][0]


def test_polygons_with_fewer_than_3_points_are_left_to_detectron2(tmp_path):
    def break_polygons(coco):
        coco["annotations"][2]["segmentation"] = [[1.0, 1.0, 5.0, 5.0]]  # 2 points
        coco["annotations"][0]["segmentation"].append([1.0, 1.0])  # one bad part of two

    dicts = load_checked_coco_json(*_write_coco(tmp_path, break_polygons))
    # load_coco_json drops the bad parts, and an annotation with no part left
    assert [len(d["annotations"]) for d in dicts] == [1, 1, 0]
    assert dicts[0]["annotations"][0]["segmentation"] == [
        [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    ]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["bbox", "segmentation"])
def test_nan_or_infinite_coordinates_are_an_error(tmp_path, where, value):
    # Python's JSON reader takes NaN / Infinity: [10, 10, NaN, 30] used to pass every check.
    def corrupt(coco):
        if where == "bbox":
            coco["annotations"][1]["bbox"][2] = value
        else:
            coco["annotations"][1]["segmentation"][0][3] = value

    json_file, image_root = _write_coco(tmp_path, corrupt)
    assert ("NaN" in open(json_file).read()) or ("Infinity" in open(json_file).read())
    with pytest.raises(
        DatasetError,
        match=r"instances\.json: 1 annotation\(s\) have a NaN or infinite coordinate in "
        r"'bbox' or 'segmentation': annotation ids 12\. Fix: regenerate",
    ):
        load_checked_coco_json(json_file, image_root)


def test_dataset_left_empty_by_dropping_is_an_error(tmp_path):
    paths = _write_coco(
        tmp_path, lambda c: [a["bbox"].__setitem__(3, -1.0) for a in c["annotations"]]
    )
    with pytest.warns(DatasetWarning), pytest.raises(
        DatasetError, match="all 3 annotations are invalid"
    ):
        load_checked_coco_json(*paths)


def test_flat_polygon_list_is_explained(tmp_path):
    paths = _write_coco(
        tmp_path, lambda c: c["annotations"][0].update(segmentation=[1, 2, 3, 4, 5, 6])
    )
    with pytest.raises(DatasetError, match="flat list of numbers.*list of lists"):
        load_checked_coco_json(*paths)


def test_the_file_is_parsed_once(tmp_path, monkeypatch):
    json_file, image_root = _write_coco(tmp_path)
    parsed = []
    real_load = json.load

    def counting_load(f, **kwargs):
        parsed.append(os.path.abspath(f.name))
        return real_load(f, **kwargs)

    monkeypatch.setattr(json, "load", counting_load)  # pycocotools reads through json.load too
    dicts = load_checked_coco_json(json_file, image_root, "adadet_test_parsed_once")
    assert parsed == [os.path.abspath(json_file)]
    assert [len(d["annotations"]) for d in dicts] == [1, 1, 1]
    MetadataCatalog.remove("adadet_test_parsed_once")


def test_ids_that_detectron2_would_merge_are_an_error(tmp_path):
    # load_coco_json keys images and categories by id: a repeated id silently merges them.
    paths = _write_coco(tmp_path, lambda c: c["images"][2].update(id=2))
    with pytest.raises(DatasetError, match=r"duplicate ids in 'images': 2\. Fix: give every"):
        load_checked_coco_json(*paths)
    paths = _write_coco(tmp_path, lambda c: c["categories"].append({"id": 1, "name": "other"}))
    with pytest.raises(DatasetError, match=r"duplicate ids in 'categories': 1\."):
        load_checked_coco_json(*paths)
    # repeated annotation ids are load_coco_json's to refuse
    paths = _write_coco(tmp_path, lambda c: c["annotations"][2].update(id=12))
    with pytest.raises(AssertionError, match=r"Annotation ids in '.*\.json' are not unique"):
        load_checked_coco_json(*paths)
