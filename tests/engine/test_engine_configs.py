"""Every config in configs/ merges into Detectron2's defaults + adadet's keys and builds an
ADN model whose distilled features exist (built on CPU, not trained)."""
import glob
import os

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from adadet import add_adn_config, get_depth
from adadet.depth import adaptive_modules, depth_layout
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


def _cpu(cfg):
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_an_adn_model(name):
    cfg = _load(name)
    assert "adn" in cfg.MODEL.BACKBONE.NAME
    assert cfg.MODEL.RESNETS.NORM != "FrozenBN"  # the skip norms must train
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = cfg.MODEL.RESNETS.NORM.replace("SyncBN", "BN")
    model = build_model(cfg)
    assert get_depth(model) == depth_layout(model).normalize(cfg.MODEL.ADN.DEPTH)
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

    def architecture(cfg):
        return cfg.MODEL.BACKBONE.NAME, cfg.MODEL.RPN.HEAD_NAME, cfg.MODEL.ROI_MASK_HEAD.NAME

    detectors = {architecture(base): detector}  # the whole-detector recipes build their own
    for name, (_, overrides) in recipes.items():
        cfg = base.clone()
        cfg.merge_from_list(overrides)
        if architecture(cfg) not in detectors:
            detectors[architecture(cfg)] = build_model(cfg)
        wrapper = SelfDistillationModel.from_config(cfg, detectors[architecture(cfg)])
        assert wrapper.students_for_iteration(0), name
    sandwich = base.clone()
    sandwich.merge_from_list(recipes["sandwich"][1])
    draws = SelfDistillationModel.from_config(sandwich, detector).students_for_iteration(3)
    assert draws[0] == "TTTT" and len(draws) == 2 and draws[1] not in ("FFFF", "TTTT")


#: Configs of adadet's own recipe (students chosen by its study, not the paper's).
SANDWICH_CONFIGS = {
    "mask_rcnn_ada_r18_embedded_cpu.yaml",
    "mask_rcnn_ada_r18_polygons_cpu.yaml",
    "mask_rcnn_ada_r18_textures_cpu.yaml",
    "mask_rcnn_ada_r50_sandwich.yaml",
}
#: Configs of adadet's architectures whose neck and heads adapt too (not the paper's).
WHOLE_DETECTOR_CONFIGS = {"mask_rcnn_ada_r50_whole.yaml", "retinanet_ada_r50_whole.yaml"}
PAPER_CONFIGS = [
    n for n in CONFIGS
    if not n.endswith("_cpu.yaml") and n not in SANDWICH_CONFIGS | WHOLE_DETECTOR_CONFIGS
]


def _students(cfg, detector, iterations=20):
    wrapper = SelfDistillationModel.from_config(cfg, detector)
    return {tuple(wrapper.students_for_iteration(i)) for i in range(iterations)}


def test_the_papers_configs_train_the_super_net_and_the_base_net_only():
    """A config named for the paper trains the paper's students: the super-net learns the
    task, the base-net alone learns from it; adadet's recipe lives in configs named for it
    (and in the CPU study configs), whose students are the sandwich rule."""
    assert PAPER_CONFIGS and set(PAPER_CONFIGS).isdisjoint(SANDWICH_CONFIGS)
    detector = build_model(_cpu(_load("mask_rcnn_ada_r18_embedded_cpu.yaml")))
    for name in PAPER_CONFIGS:
        d = _load(name).MODEL.ADN.DISTILL
        assert d.ENABLED and list(d.SUBNETS) == ["TTTT"] and list(d.ALWAYS_STUDENTS) == [], name
        assert d.NUM_STUDENTS == 1, name
    cfg = _load("mask_rcnn_ada_r50.yaml")
    assert _students(cfg, detector) == {("TTTT",)}
    for name in SANDWICH_CONFIGS:
        drawn = _students(_load(name), detector)
        assert all(s[0] == "TTTT" and len(s) == 2 for s in drawn), name
        assert len({s[1] for s in drawn}) > 3, name  # a mixed setting drawn anew


def test_the_whole_detector_configs_distill_into_the_whole_base_net():
    for name in WHOLE_DETECTOR_CONFIGS:
        cfg = _cpu(_load(name))
        cfg.MODEL.RESNETS.NORM = "BN"
        cfg.MODEL.RESNETS.DEPTH = 18
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        detector = build_model(cfg)
        assert len(depth_layout(detector).parts) > 1, name  # something besides the backbone
        assert _students(cfg, detector) == {("T" * depth_layout(detector).num_flags,)}, name


def test_the_lazy_paper_configs_train_the_papers_students():
    from detectron2.config import LazyConfig

    for name in ("mask_rcnn_ada_r50.py", "mask_rcnn_ada_vit_b.py"):
        d = LazyConfig.load(os.path.join(CONFIG_DIR, "lazy", name)).adn.distill
        assert list(d.subnets) == ["TTTT"] and list(d.always_students) == [], name
    demo = LazyConfig.load(os.path.join(CONFIG_DIR, "lazy", "mask_rcnn_ada_r18_embedded_cpu.py"))
    assert list(demo.adn.distill.always_students) == ["TTTT"]
    assert len(demo.adn.distill.subnets) == 14
