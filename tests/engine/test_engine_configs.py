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
from adn_testing import load_tool
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


def test_every_study_task_trains_and_evaluates_on_its_own_data_sets():
    """tools/study.py --task: each config trains on adadet_<task>_train, with as many
    classes as that data set has, and evaluates on its tune split."""
    from detectron2.data import MetadataCatalog

    for task, config in load_tool("study").TASKS.items():
        cfg = _load(os.path.basename(config))
        assert cfg.DATASETS.TRAIN == (f"adadet_{task}_train",)
        assert cfg.DATASETS.TEST == (f"adadet_{task}_tune",)
        classes = MetadataCatalog.get(f"adadet_{task}_train").thing_classes
        assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(classes)


def test_every_study_recipe_is_a_valid_config():
    """tools/study.py's recipes are override lists: each must name existing keys with
    values of their types, and give a self-distillation model its checks accept."""
    recipes = load_tool("study").RECIPES
    base = _load("mask_rcnn_ada_r18_polygons_cpu.yaml")
    base.MODEL.DEVICE = "cpu"
    detector = build_model(base)
    for name, (_, overrides) in recipes.items():
        cfg = base.clone()
        cfg.merge_from_list(overrides)
        wrapper = SelfDistillationModel.from_config(cfg, detector)
        assert wrapper.students_for_iteration(0), name
    sandwich = base.clone()
    sandwich.merge_from_list(recipes["sandwich"][1])
    draws = SelfDistillationModel.from_config(sandwich, detector).students_for_iteration(3)
    assert draws[0] == "TTTT" and len(draws) == 2 and draws[1] not in ("FFFF", "TTTT")
