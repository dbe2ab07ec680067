"""Every config in configs/ merges into Detectron2's defaults + adadet's keys and builds an
ADN model whose distilled features exist (built on CPU, not trained)."""
import glob
import os

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from adadet import add_adn_config, get_depth
from adadet.depth import adaptive_modules
from adadet.engine import SelfDistillationModel
from engine_tiny_data import HERE

CONFIG_DIR = os.path.abspath(os.path.join(HERE, "..", "..", "configs"))
CONFIGS = sorted(
    os.path.basename(p)
    for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))
    if not os.path.basename(p).startswith("Base-")
)


def _load(name):
    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIG_DIR, name))
    return cfg


def test_expected_configs_exist():
    expected = {
        "mask_rcnn_ada_r50.yaml",
        "faster_rcnn_ada_r50.yaml",
        "retinanet_ada_r50.yaml",
        "mask_rcnn_ada_r101.yaml",
        "mask_rcnn_ada_r50_embedded_cpu.yaml",
        "mask_rcnn_ada_r18_embedded_cpu.yaml",
    }
    assert expected <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_an_adn_model(name):
    cfg = _load(name)
    assert "adn" in cfg.MODEL.BACKBONE.NAME
    assert cfg.MODEL.RESNETS.NORM != "FrozenBN"  # the skip norms must train
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.RESNETS.NORM.replace("SyncBN", "BN")
    model = build_model(cfg)
    assert get_depth(model) == cfg.MODEL.ADN.DEPTH
    assert adaptive_modules(model)
    SelfDistillationModel.from_config(cfg, model)  # checks DISTILL.FEATURES exist


def test_paper_setting():
    cfg = _load("mask_rcnn_ada_r50.yaml")
    assert cfg.MODEL.MASK_ON and cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.DATASETS.TEST == ("coco_2017_val",)
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR) == (90000, 16, 0.02)
    assert tuple(cfg.SOLVER.STEPS) == (60000, 80000)
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.INPUT.FORMAT == "RGB"
    assert cfg.MODEL.RESNETS.NORM == "SyncBN"
    assert cfg.MODEL.ADN.DISTILL.SUBNETS == ["TTTT"]


@pytest.mark.parametrize(
    "name", ["mask_rcnn_ada_r50_embedded_cpu.yaml", "mask_rcnn_ada_r18_embedded_cpu.yaml"]
)
def test_cpu_demo_configs(name):
    cfg = _load(name)
    assert cfg.MODEL.DEVICE == "cpu" and cfg.MODEL.WEIGHTS == ""
    assert cfg.DATASETS.TRAIN == ("adadet_shapes_train",)
    assert cfg.DATASETS.TEST == ("adadet_shapes_val",)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 3
