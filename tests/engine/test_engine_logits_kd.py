"""Distillation of classification logits (MODEL.ADN.DISTILL.LOGITS_WEIGHT): the dense-head
(RPN / RetinaNet) and ROI terms, where their gradients go, and the hooks that capture them."""
import copy
import dataclasses
import math

import pytest
import torch
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from adadet.engine import ADNTrainStep, SelfDistillationModel
from adadet.modeling import DistillOptions
from adadet.modeling.logits_distill import roi_class_scores
from adn_testing import make_project_cfg, synthetic_batch
from engine_tiny_data import tiny_cfg
from test_engine_step import _batch, _build, _grad_norm, _param_groups


@pytest.fixture(scope="module")
def rcnn_setup(tiny_dataset):
    cfg = tiny_cfg()
    cfg.MODEL.ADN.DISTILL.LOGITS_WEIGHT = 0.5
    return cfg, _build(cfg), _batch(cfg)


def _wrapper(cfg, detector, **overrides):
    options = dataclasses.replace(DistillOptions.from_config(cfg), **overrides)
    return SelfDistillationModel(detector, options).train()


def _forward(wrapper, batch, seed=7):
    torch.manual_seed(seed)  # the same proposal sampling in every call
    with EventStorage(0):
        return wrapper(batch, iteration=0)


def _factor(key, w):
    """A term's weight in ALPHA * L_super + (1 - ALPHA) * (SUB_TASK_WEIGHT * L_sub +
    KD_WEIGHT * L_kd + LOGITS_WEIGHT * L_kd_logits)."""
    o = w.options
    if key.startswith("super/"):
        return o.alpha
    if key.startswith("sub/"):
        return (1 - o.alpha) * o.sub_task_weight
    return (1 - o.alpha) * {"loss_kd": o.kd_weight, "loss_kd_logits": o.logits_weight}[key]


def _unweighted(cfg, detector, batch):
    """Every term unweighted: ALPHA 0.5 with every weight 1 halves each term, exactly."""
    ones = dict(alpha=0.5, sub_task_weight=1.0, kd_weight=1.0, logits_weight=1.0)
    return {k: 2 * v for k, v in _forward(_wrapper(cfg, detector, **ones), batch).items()}


def _hooked(detector):
    """The modules of the detector that still carry forward hooks."""
    return [name for name, m in detector.named_modules() if m._forward_hooks]


def test_logits_term_is_positive_and_weighted_into_the_total(rcnn_setup):
    cfg, detector, batch = rcnn_setup
    wrapper = _wrapper(cfg, detector, alpha=0.3, sub_task_weight=0.7, kd_weight=1.3)
    losses = _forward(wrapper, batch)
    kd_logits = losses["loss_kd_logits"]
    assert kd_logits.dim() == 0 and math.isfinite(kd_logits.item()) and kd_logits.item() > 0
    raw = _unweighted(cfg, detector, batch)
    assert set(losses) == set(raw) and "super/loss_cls" in raw and "sub/loss_cls" in raw
    for key, value in losses.items():  # each term weighted: their sum is the loss
        torch.testing.assert_close(value, _factor(key, wrapper) * raw[key], msg=key)
    assert _hooked(detector) == []

    # a real step logs it to the EventStorage (hence metrics.json) as its own term
    detector = copy.deepcopy(detector)
    step = ADNTrainStep(
        SelfDistillationModel.from_config(cfg, detector), [batch], build_optimizer(cfg, detector)
    )
    with EventStorage(0) as storage:
        step.iter = 0
        step.run_step()
        logged = storage.histories()
    logged_kd_logits = logged["loss_kd_logits"].latest()
    assert math.isfinite(logged_kd_logits) and logged_kd_logits > 0
    assert "loss_kd" in logged and "sub/loss_cls" in logged


def test_logits_gradient_reaches_the_student_only(rcnn_setup):
    cfg, detector, batch = rcnn_setup
    wrapper = _wrapper(cfg, detector)
    groups = _param_groups(detector)
    detector.zero_grad(set_to_none=True)
    _forward(wrapper, batch)["loss_kd_logits"].backward()
    # the super-net's logits are detached: nothing reaches what only the super-net ran
    assert _grad_norm(groups["skippable"]) == 0 and _grad_norm(groups["main_norms"]) == 0
    assert _grad_norm(groups["skip_norms"]) > 0
    # both terms train the (shared) heads through the student pass
    assert _grad_norm(detector.proposal_generator.rpn_head.objectness_logits.parameters()) > 0
    assert _grad_norm(detector.roi_heads.box_predictor.cls_score.parameters()) > 0
    assert _grad_norm(detector.roi_heads.box_predictor.bbox_pred.parameters()) == 0
    assert _grad_norm(detector.roi_heads.mask_head.parameters()) == 0
    detector.zero_grad(set_to_none=True)


def test_terms_are_zero_when_the_student_is_the_teacher(rcnn_setup):
    cfg, detector, batch = rcnn_setup
    # the two passes sample different proposals, but the ROI term compares the same boxes
    wrapper = _wrapper(cfg, detector, subnets=["FFFF"])
    with torch.no_grad():
        assert _forward(wrapper, batch)["loss_kd_logits"].item() == 0.0

        # the captured boxes are the box branch's (not the mask pooler's): the box branch
        # run again on them with the same features gives the teacher's scores exactly
        with EventStorage(0):
            teacher = wrapper._run_pass(batch, "FFFF", "super", teacher=True)
        boxes, scores = teacher.roi
        assert sum(len(b) for b in boxes) == scores.shape[0] > len(batch) * 2
        again = roi_class_scores(detector.roi_heads, teacher.features, boxes)
        assert torch.equal(again, scores)
        assert len(teacher.dense_logits) == len(cfg.MODEL.RPN.IN_FEATURES)
        assert teacher.dense_logits[0].shape[:2] == (len(batch), 3)  # (N, A, H, W)


def test_weight_zero_changes_nothing(rcnn_setup):
    cfg, detector, batch = rcnn_setup
    calls = []
    spy = detector.roi_heads.box_predictor.register_forward_hook(lambda *a: calls.append(1))
    try:
        off = _forward(_wrapper(cfg, detector, logits_weight=0.0), batch)
        predictor_calls_off = len(calls)
        on = _forward(_wrapper(cfg, detector, logits_weight=0.5), batch)
    finally:
        spy.remove()
    assert "loss_kd_logits" not in off
    assert predictor_calls_off == 2  # super and sub passes only: no extra computation
    assert len(calls) - predictor_calls_off == 3  # + the student's box branch on teacher boxes
    # the task and feature terms do not depend on the weight, to the bit: the weight adds
    # its term only
    assert set(on) - set(off) == {"loss_kd_logits"}
    for key, value in off.items():
        assert torch.equal(value, on[key]), key


def test_hooks_are_removed_even_when_the_forward_fails(rcnn_setup, monkeypatch):
    cfg, detector, batch = rcnn_setup
    wrapper = _wrapper(cfg, detector)
    assert _hooked(detector) == []

    def broken(*args, **kwargs):  # runs after the box branch, while every hook is set
        raise RuntimeError("mask head failed")

    monkeypatch.setattr(detector.roi_heads.mask_head, "forward", broken)
    with pytest.raises(RuntimeError, match="mask head failed"):
        _forward(wrapper, batch)
    assert _hooked(detector) == []


def test_unsupported_heads_are_refused_at_construction(rcnn_setup):
    cfg, _, _ = rcnn_setup
    cascade = cfg.clone()
    cascade.MODEL.ROI_HEADS.NAME = "CascadeROIHeads"
    cascade.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    detector = _build(cascade)
    with pytest.raises(ValueError, match=r"CascadeROIHeads.*LOGITS_WEIGHT to 0"):
        SelfDistillationModel.from_config(cascade, detector)
    cascade.MODEL.ADN.DISTILL.LOGITS_WEIGHT = 0.0  # the fix the message names
    SelfDistillationModel.from_config(cascade, detector)
    cascade.MODEL.ADN.DISTILL.LOGITS_WEIGHT = -1.0
    with pytest.raises(ValueError, match="LOGITS_WEIGHT must be >= 0"):
        SelfDistillationModel.from_config(cascade, detector)


def test_retinanet_distills_its_class_logits():
    cfg = make_project_cfg(
        "retinanet_ada_r50.yaml",
        MODEL__RESNETS__NORM="BN",
        MODEL__RESNETS__DEPTH=18,
        MODEL__RESNETS__RES2_OUT_CHANNELS=64,
        MODEL__FPN__OUT_CHANNELS=32,
        MODEL__RETINANET__NUM_CONVS=1,
        MODEL__RETINANET__NUM_CLASSES=3,
    )
    cfg.MODEL.ADN.DISTILL.LOGITS_WEIGHT = 1.0
    # The paper's one student, the base-net: it runs no skippable block (named here so
    # that the test holds whatever the config's students are).
    cfg.MODEL.ADN.DISTILL.SUBNETS = ["TTTT"]
    cfg.MODEL.ADN.DISTILL.ALWAYS_STUDENTS = []
    detector = _build(cfg)
    batch = synthetic_batch(num_images=2, height=128, width=160)
    losses = _forward(_wrapper(cfg, detector, kd_weight=0.0, sub_task_weight=0.0), batch)
    kd_logits = losses["loss_kd_logits"]
    # Small (about 2e-6: RetinaNet's prior-probability bias dominates the random-weight
    # logits) but a real difference of two depths; float noise on equal logits gives < 1e-12.
    assert math.isfinite(kd_logits.item()) and kd_logits.item() > 1e-8
    # weight 0: those terms are zero (their gradient too)
    assert all(v.item() == 0.0 for k, v in losses.items() if k.startswith("sub/") or k == "loss_kd")

    groups = _param_groups(detector)
    detector.zero_grad(set_to_none=True)
    kd_logits.backward()
    assert _grad_norm(groups["skippable"]) == 0 and _grad_norm(groups["main_norms"]) == 0
    assert _grad_norm(groups["skip_norms"]) > 1e-8  # about 1e-5
    assert _grad_norm(detector.head.cls_score.parameters()) > 1e-8  # about 5e-4
    assert _grad_norm(detector.head.bbox_pred.parameters()) == 0
    assert _hooked(detector) == []

    with torch.no_grad():  # the super-net as its own student: the same anchors, equal logits
        same = _forward(_wrapper(cfg, detector, subnets=["FFFF"]), batch)
    assert same["loss_kd_logits"].item() == 0.0
