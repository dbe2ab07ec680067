"""build_adn_optimizer: ViT-ADN's layer-wise LR decay and AdamW on top of Detectron2's
optimizer (its SOLVER keys, gradient clipping, LR schedule), and Detectron2's own optimizer
whenever neither is asked for."""
import logging
import re

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer, get_default_optimizer_params

from adadet.engine import adn_optimizer_param_groups, build_adn_optimizer
from adn_testing import make_project_cfg

BASE_LR = 1e-3
NUM_BLOCKS = 12  # ViT-B


@pytest.fixture(scope="module")
def vit_b():
    """configs/mask_rcnn_ada_vit_b.yaml (ViT-B, 12 blocks), built once: no forward pass."""
    cfg = make_project_cfg("mask_rcnn_ada_vit_b.yaml")
    return cfg, build_model(cfg)


def _cfg(cfg, **solver):
    cfg = cfg.clone()
    cfg.SOLVER.BASE_LR = BASE_LR
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def _expected_factor(name, rate):
    vit = "backbone.bottom_up."
    if name.startswith((vit + "patch_embed.", vit + "pos_embed")):
        return rate ** (NUM_BLOCKS + 1)
    block = re.match(re.escape(vit) + r"blocks\.(\d+)\.", name)
    if block:
        return rate ** (NUM_BLOCKS - int(block.group(1)))
    return 1.0  # final norm, pyramid, RPN and ROI heads


def _by_param(optimizer):
    return {id(p): group for group in optimizer.param_groups for p in group["params"]}


def _comparable(groups):
    return [{**group, "params": [id(p) for p in group["params"]]} for group in groups]


@pytest.mark.parametrize("name", ["SGD", "ADAMW"])
def test_groups_carry_the_lr_of_each_block(vit_b, name):
    cfg, model = vit_b
    rate = 0.7
    cfg = _cfg(cfg, OPTIMIZER=name, BIAS_LR_FACTOR=2.0, WEIGHT_DECAY=0.05, WEIGHT_DECAY_BIAS=0.01)
    assert cfg.MODEL.VIT_ADN.LR_DECAY_RATE == rate  # the config's ViTDet value
    optimizer = build_adn_optimizer(cfg, model)
    expected_type = {"SGD": torch.optim.SGD, "ADAMW": torch.optim.AdamW}[name]
    assert isinstance(optimizer, expected_type)
    assert type(optimizer).__name__.endswith("WithGradientClip")  # SOLVER.CLIP_GRADIENTS
    by_param = _by_param(optimizer)
    params = dict(model.named_parameters())
    assert len(by_param) == len(params)  # every parameter, once
    for param_name, param in params.items():
        group = by_param[id(param)]
        bias = param_name.endswith(".bias")
        lr = BASE_LR * (2.0 if bias else 1.0) * _expected_factor(param_name, rate)
        assert group["lr"] == pytest.approx(lr, rel=1e-12), param_name
    vit = model.backbone.bottom_up
    assert by_param[id(vit.blocks[0].attn.qkv.weight)]["lr"] == pytest.approx(BASE_LR * rate ** 12)
    assert by_param[id(vit.blocks[11].mlp.fc1.weight)]["lr"] == pytest.approx(BASE_LR * rate)
    assert by_param[id(vit.pos_embed)]["lr"] == pytest.approx(BASE_LR * rate ** 13)
    # Weight decay: Detectron2's rules, untouched by the LR factors.
    assert by_param[id(vit.blocks[0].attn.qkv.weight)]["weight_decay"] == 0.05
    assert by_param[id(vit.blocks[0].norm1.norm.weight)]["weight_decay"] == 0.0  # WEIGHT_DECAY_NORM
    assert by_param[id(vit.blocks[0].attn.qkv.bias)]["weight_decay"] == 0.01  # WEIGHT_DECAY_BIAS
    if name == "SGD":
        assert optimizer.defaults["momentum"] == cfg.SOLVER.MOMENTUM
        assert optimizer.defaults["nesterov"] == cfg.SOLVER.NESTEROV


def test_lr_schedule_keeps_the_ratios(vit_b):
    cfg, model = vit_b
    cfg = _cfg(cfg, WARMUP_ITERS=2, STEPS=(3,), MAX_ITER=6, GAMMA=0.1)
    optimizer = build_adn_optimizer(cfg, model)
    initial = [group["lr"] for group in optimizer.param_groups]
    assert len(set(initial)) == NUM_BLOCKS + 2  # 12 blocks, the embeddings, the rest
    scheduler = build_lr_scheduler(cfg, optimizer)
    for iteration in range(5):
        multiplier = optimizer.param_groups[0]["lr"] / initial[0]
        if iteration == 4:  # after warm-up and the step at 3
            assert multiplier == pytest.approx(0.1)
        for group, lr in zip(optimizer.param_groups, initial):
            assert group["lr"] == pytest.approx(lr * multiplier, rel=1e-9)
        optimizer.step()  # no gradients: nothing moves, the schedule advances
        scheduler.step()


def test_without_decay_or_vit_it_is_detectron2s_optimizer(vit_b, caplog):
    cfg, model = vit_b
    cfg = _cfg(cfg, OPTIMIZER="SGD", BIAS_LR_FACTOR=2.0)
    cfg.MODEL.VIT_ADN.LR_DECAY_RATE = 1.0
    ours, theirs = build_adn_optimizer(cfg, model), build_optimizer(cfg, model)
    assert type(ours).__name__ == type(theirs).__name__ == "SGDWithGradientClip"
    assert _comparable(ours.param_groups) == _comparable(theirs.param_groups)

    # AdamW at rate 1.0: Detectron2's groups, AdamW's update.
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    adamw = build_adn_optimizer(cfg, model)
    assert isinstance(adamw, torch.optim.AdamW)
    groups = adn_optimizer_param_groups(cfg, model)
    reference = get_default_optimizer_params(
        model, base_lr=BASE_LR, weight_decay_norm=0.0, bias_lr_factor=2.0
    )
    assert _comparable(groups) == _comparable(reference)

    # A decay rate without a ViT-ADN changes nothing, and says so.
    resnet_cfg = make_project_cfg(
        "mask_rcnn_ada_r18_embedded_cpu.yaml", MODEL__VIT_ADN__LR_DECAY_RATE=0.7
    )
    resnet = build_model(resnet_cfg)
    with caplog.at_level(logging.WARNING, logger="adadet.engine.optimizer"):
        ours = build_adn_optimizer(resnet_cfg, resnet)
    assert "has no effect: the model has no ViT-ADN" in caplog.text
    assert _comparable(ours.param_groups) == _comparable(
        build_optimizer(resnet_cfg, resnet).param_groups
    )


def test_bad_rate_or_optimizer_is_refused(vit_b):
    cfg, model = vit_b
    for rate in (0.0, -0.5, 1.5):
        bad = _cfg(cfg)
        bad.MODEL.VIT_ADN.LR_DECAY_RATE = rate
        with pytest.raises(ValueError, match=r"MODEL\.VIT_ADN\.LR_DECAY_RATE is .* \(0, 1\]"):
            build_adn_optimizer(bad, model)
    with pytest.raises(ValueError, match=r"SOLVER\.OPTIMIZER is 'ADAM': use one of"):
        build_adn_optimizer(_cfg(cfg, OPTIMIZER="ADAM"), model)


def test_clipped_optimizer_clips_before_each_step():
    """The lazy configs' SOLVER.CLIP_GRADIENTS: a gradient of norm 100 moves the weight
    by at most clip_value * lr; "value" clips every component."""
    from adadet.engine.optimizer import clipped_optimizer

    for clip_type, limit in (("norm", 5.0), ("value", 5.0 * 4 ** 0.5)):
        weight = torch.nn.Parameter(torch.zeros(4))
        optimizer = clipped_optimizer(
            torch.optim.SGD, params=[weight], lr=1.0, clip_type=clip_type, clip_value=5.0
        )
        weight.grad = torch.full((4,), 50.0)  # norm 100
        optimizer.step()
        assert 4.9 < weight.detach().norm() <= limit + 1e-4
    with pytest.raises(ValueError, match="clip_type is 'l2'"):
        clipped_optimizer(torch.optim.SGD, params=[weight], lr=1.0, clip_type="l2", clip_value=1)
