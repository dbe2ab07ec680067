"""Distilling stage outputs: captured from the right modules, gradients where they belong."""
import copy
import dataclasses

import pytest
import torch
from detectron2.utils.events import EventStorage

from adadet import set_depth, using_depth
from adadet.engine import SelfDistillationModel
from adadet.modeling.distill_features import capture_features, distillable_features
from engine_tiny_data import tiny_cfg
from test_engine_step import _backward, _batch, _build, _grad_norm

STAGES = ["res2", "res3", "res4", "res5"]


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    cfg = tiny_cfg()
    return cfg, _build(cfg), _batch(cfg)


def test_stage_outputs_are_what_the_bottom_up_returns_at_each_depth(setup):
    _, detector, batch = setup
    detector = copy.deepcopy(detector).eval()
    assert distillable_features(detector) == ["p2", "p3", "p4", "p5", "p6"] + STAGES
    images = detector.preprocess_image(batch).tensor
    with torch.no_grad():
        for depth in ("FFFF", "TFTF", "TTTT"):
            with using_depth(detector, depth):
                expected = detector.backbone.bottom_up(images)
                with capture_features(detector, STAGES + ["p3"]) as record:
                    fpn = detector.backbone(images)
            for name in STAGES:
                assert len(record[name]) == 1
                assert torch.equal(record[name][0], expected[name]), (depth, name)
            assert torch.equal(record["p3"][0], fpn["p3"])
    # skipping res3's tail changes res3's output (the map compared is the stage's own)
    with torch.no_grad(), capture_features(detector, ["res3"]) as record:
        for depth in ("FFFF", "FTFF"):
            set_depth(detector, depth)
            detector.backbone(images)
    assert (record["res3"][0] - record["res3"][1]).abs().max() > 1e-3


def test_stage_distillation_teaches_the_bottom_up_only(setup):
    cfg, detector, batch = setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.FEATURES = STAGES
    cfg.MODEL.ADN.DISTILL.POOLING = "global"
    cfg.MODEL.ADN.DISTILL.REDUCTION = "batchmean"
    wrapper = SelfDistillationModel.from_config(cfg, copy.deepcopy(detector)).train()
    # the KD term alone: its gradient reaches the student's bottom-up, not the FPN or heads
    losses = _backward(wrapper, batch, alpha=0.0, sub_task_weight=0.0, kd_weight=1.0)
    assert losses["loss_kd"].item() > 0
    student = wrapper.detector
    assert _grad_norm(student.backbone.bottom_up.parameters()) > 0
    fpn = [p for n, p in student.backbone.named_parameters() if not n.startswith("bottom_up.")]
    assert _grad_norm(fpn) == 0
    assert _grad_norm(student.roi_heads.parameters()) == 0

    # FPN levels instead: the FPN learns from the KD term too
    cfg.MODEL.ADN.DISTILL.FEATURES = ["p2", "p3"]
    wrapper = SelfDistillationModel.from_config(cfg, copy.deepcopy(detector)).train()
    _backward(wrapper, batch, alpha=0.0, sub_task_weight=0.0, kd_weight=1.0)
    fpn = [p for n, p in wrapper.detector.backbone.named_parameters() if "bottom_up" not in n]
    assert _grad_norm(fpn) > 0


def test_stage_and_fpn_features_together_and_config_errors(setup):
    cfg, detector, batch = setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.FEATURES = ["res4", "p4"]
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    with EventStorage(0):
        losses = wrapper(batch, iteration=0)
    assert torch.isfinite(losses["loss_kd"]) and losses["loss_kd"].item() > 0
    for key, value, message in [
        ("FEATURES", ["res6"], "res6"),
        ("FEATURES", ["res4", "res4"], "more than once"),
        ("POOLING", "max", "POOLING"),
        ("REDUCTION", "sum", "REDUCTION"),
        ("KD_WEIGHT", -5.0, "KD_WEIGHT must be >= 0"),
        ("SUB_TASK_WEIGHT", -1.0, "SUB_TASK_WEIGHT must be >= 0"),
        ("KD_WEIGHT", float("nan"), "KD_WEIGHT"),
    ]:
        bad = cfg.clone()
        setattr(bad.MODEL.ADN.DISTILL, key, value)
        with pytest.raises(ValueError, match=message):
            SelfDistillationModel.from_config(bad, detector)


def test_distill_options_are_checked_when_built_and_frozen(setup):
    """The options refuse a bad value without a detector (a lazy config's keywords, Python
    code), name the key, and cannot change afterwards."""
    from adadet.modeling import DistillOptions

    for keywords, message in [
        (dict(alpha="0.5"), r"ALPHA must be a number, got '0.5' \(str\)"),
        (dict(alpha=True), "ALPHA must be a number"),
        (dict(temperature=0.0), "TEMPERATURE must be a float > 0"),
        (dict(temperature=float("nan")), "TEMPERATURE must be a float > 0"),
        (dict(pooling="max"), r"POOLING \(pooling\) must be one of"),
        (dict(num_students=1.0), "NUM_STUDENTS must be an integer >= 1"),
        (dict(logits_weight=-1), "LOGITS_WEIGHT must be >= 0"),
    ]:
        with pytest.raises(ValueError, match="MODEL.ADN.DISTILL." + message):
            DistillOptions(**keywords)
    options = DistillOptions(subnets=["base"], features=["res4"], alpha=1)
    assert options.subnets == ("base",) and options.alpha == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.alpha = 0.3
    cfg, detector, _ = setup
    resolved = SelfDistillationModel(detector, options).options
    assert resolved.subnets == ("TTTT",) and resolved.features == ("res4",)
    with pytest.raises(TypeError, match="alhpa"):
        SelfDistillationModel(detector, alhpa=0.3)
    with pytest.raises(TypeError, match="not both"):
        SelfDistillationModel(detector, options, alpha=0.3)


def _settings(model):
    return dataclasses.asdict(model.options)


def test_python_defaults_are_the_config_defaults_for_resnet_and_vit(setup):
    """SelfDistillationModel(detector) trains what add_adn_config's defaults and the lazy
    configs' `adn.distill` train: the paper's students (the base-net) and the stage outputs."""
    from detectron2.config import LazyConfig, get_cfg, instantiate
    from detectron2.modeling import build_model

    from adadet import add_adn_config
    from adn_testing import ROOT, TINY_VIT_ADN_KEYS, set_cfg_keys

    cfg, detector, _ = setup
    defaults = get_cfg()
    add_adn_config(defaults)
    python = _settings(SelfDistillationModel(detector))
    assert python == _settings(SelfDistillationModel.from_config(defaults, detector))
    lazy = LazyConfig.load(str(ROOT / "configs" / "lazy" / "common" / "adn.py")).adn.distill
    lazy.detector = detector
    assert python == _settings(instantiate(lazy))
    assert python["features"] == tuple(STAGES) and python["always_students"] == ()
    assert python["subnets"] == ("TTTT",) and python["num_students"] == 1

    vit_cfg = set_cfg_keys(cfg.clone(), **TINY_VIT_ADN_KEYS, MODEL__FPN__OUT_CHANNELS=32)
    vit = SelfDistillationModel(build_model(vit_cfg))
    assert vit.options.features == ("group1", "group2", "group3", "group4")  # the groups' outputs


def test_legal_but_doubtful_values_are_named_once_with_what_they_do(monkeypatch):
    import logging

    from adadet.modeling import DistillOptions, distill_options

    monkeypatch.setattr(distill_options, "_WARNED", set())
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    distill_options.logger.addHandler(handler)
    try:
        for _ in range(2):  # a second model with the same value says nothing new
            DistillOptions(alpha=1.0)
        DistillOptions(alpha=0.0, temperature=1e6)
        DistillOptions(alpha=1.0, distill=False)  # no students: nothing is doubtful
        DistillOptions(alpha=0.5, temperature=2.0)  # plausible values: silent
    finally:
        distill_options.logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert len(messages) == 3, messages
    assert "ALPHA 1.0" in messages[0] and "learn nothing" in messages[0]
    assert "ALPHA 0.0" in messages[1] and "never learns" in messages[1]
    assert "TEMPERATURE 1000000.0" in messages[2] and "The authors use 1" in messages[2]
