"""A model that learns masks refuses, before its first iteration, a training set whose
objects lack segmentations (Detectron2 drops "segmentation": [] while loading, then a
later step fails with "Cannot find field 'gt_masks'"): both config systems."""
import json

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from adadet.data.validation import DatasetError
from adadet.engine import ADNTrainer
from engine_tiny_data import tiny_cfg, write_tiny_coco

NAME = "adadet_test_tiny_unmasked"


@pytest.fixture
def unmasked_dataset(tmp_path):
    json_file, image_root = write_tiny_coco(str(tmp_path), "train", 4)
    data = json.loads(open(json_file).read())
    for annotation in data["annotations"][-3:]:  # the last 3 objects, in 2 images
        annotation["segmentation"] = []
    with open(json_file, "w") as f:
        json.dump(data, f)
    register_coco_instances(NAME, {}, json_file, image_root)
    yield NAME
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


def test_a_mask_model_refuses_objects_without_masks_before_training(unmasked_dataset, tmp_path):
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TRAIN = (unmasked_dataset,)
    with pytest.raises(DatasetError, match=r"3 of 8 annotations \(in 2 images.*MODEL.MASK_ON False"):
        ADNTrainer.build_train_loader(cfg)
    cfg.MODEL.MASK_ON = False  # boxes only: nothing to refuse
    assert ADNTrainer.build_train_loader(cfg) is not None


def test_a_lazy_config_refuses_them_too(unmasked_dataset):
    from detectron2.config import LazyConfig

    from adadet.engine.lazy_training import _build_train_loader
    from adn_testing import ROOT

    cfg = LazyConfig.load(str(ROOT / "configs" / "lazy" / "mask_rcnn_ada_r18_embedded_cpu.py"))
    cfg.dataloader.train.dataset.names = unmasked_dataset
    with pytest.raises(DatasetError, match=rf"{unmasked_dataset}: 3 of 8 annotations"):
        _build_train_loader(cfg.dataloader.train)
    cfg.dataloader.train.dataset.names = "adadet_shapes_train"  # a whole data set builds
    assert next(iter(_build_train_loader(cfg.dataloader.train)))
