"""A user's own COCO data set: registered with checks, images that cannot be read are
named with the fix (also from the trainer's data loader)."""
import json
import os

import numpy as np
import pytest
from PIL import Image
from detectron2.data import DatasetCatalog, MetadataCatalog

from adadet.data import CheckedDatasetMapper, DatasetError, register_checked_coco_instances
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
