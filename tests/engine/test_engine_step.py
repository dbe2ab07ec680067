"""The self-distillation training step: where gradients go, what is logged, plain mode."""
import copy
import dataclasses

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from adadet import add_adn_config, all_depths, get_depth
from adadet.engine import ADNAMPTrainStep, ADNTrainer, ADNTrainStep, SelfDistillationModel
from adadet.layers import SwitchableNormConv2d
from adn_testing import ROOT
from engine_tiny_data import tiny_cfg


def _batch(cfg, n=2):
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[],  # no random flip: every step sees the same batch
        image_format=cfg.INPUT.FORMAT,
        use_instance_mask=cfg.MODEL.MASK_ON,
    )
    return [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[:n]]


def _build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _param_groups(detector):
    """Parameters by role: main / skip norms of mandatory blocks, skippable blocks."""
    main_norms, skip_norms, skippable = [], [], []
    for stage in detector.backbone.bottom_up.stages:
        for block in stage.mandatory_blocks:
            for module in block.modules():
                if isinstance(module, SwitchableNormConv2d):
                    main_norms += list(module.norm.parameters())
                    skip_norms += list(module.norm_skip.parameters())
        for block in stage.skippable_blocks:
            skippable += list(block.parameters())
    assert main_norms and skip_norms and skippable
    return {"main_norms": main_norms, "skip_norms": skip_norms, "skippable": skippable}


def _grad_norm(params):
    return sum(float(p.grad.abs().sum()) for p in params if p.grad is not None)


def _backward(wrapper, batch, **weights):
    wrapper.options = dataclasses.replace(wrapper.options, **weights)
    wrapper.detector.zero_grad(set_to_none=True)
    with EventStorage(0):
        losses = wrapper(batch, iteration=0)
    sum(losses.values()).backward()  # the terms are weighted: their sum is the loss
    return losses


@pytest.fixture(scope="module")
def bn_setup(tiny_dataset):
    cfg = tiny_cfg()
    detector = _build(cfg)
    return cfg, detector, _batch(cfg)


def test_gradients_reach_each_norm_set_from_its_pass(bn_setup):
    cfg, detector, batch = bn_setup
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    groups = _param_groups(detector)

    _backward(wrapper, batch, alpha=0.5, sub_task_weight=1.0, kd_weight=1.0)
    assert all(_grad_norm(g) > 0 for g in groups.values())

    # super-net term only: the skip norms never ran in it
    _backward(wrapper, batch, alpha=1.0)
    assert _grad_norm(groups["skip_norms"]) == 0
    assert _grad_norm(groups["main_norms"]) > 0 and _grad_norm(groups["skippable"]) > 0

    # sub-net terms only: skippable blocks and main norms ran in the super-net only
    _backward(wrapper, batch, alpha=0.0, sub_task_weight=1.0, kd_weight=1.0)
    assert _grad_norm(groups["skippable"]) == 0 and _grad_norm(groups["main_norms"]) == 0
    assert _grad_norm(groups["skip_norms"]) > 0

    # KD term only: the teacher (super-net features) is detached, so nothing reaches the
    # super-net-only parameters, while the student learns from it
    losses = _backward(wrapper, batch, alpha=0.0, sub_task_weight=0.0, kd_weight=1.0)
    assert losses["loss_kd"].item() > 0
    assert _grad_norm(groups["skippable"]) == 0 and _grad_norm(groups["main_norms"]) == 0
    assert _grad_norm(groups["skip_norms"]) > 0
    assert get_depth(detector) == cfg.MODEL.ADN.DEPTH


def test_one_step_updates_both_norm_sets_and_logs_every_term(bn_setup):
    cfg, detector, batch = bn_setup
    detector = copy.deepcopy(detector)
    wrapper = SelfDistillationModel.from_config(cfg, detector)
    groups = _param_groups(detector)
    before = {k: [p.detach().clone() for p in g] for k, g in groups.items()}
    step = ADNTrainStep(wrapper, [batch], build_optimizer(cfg, detector))
    with EventStorage(0) as storage:
        step.iter = 0
        step.run_step()
        logged = set(storage.histories())
    for name, params in groups.items():
        changed = [not torch.equal(p, b) for p, b in zip(params, before[name])]
        assert any(changed), f"{name} did not change"
    for term in ("loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"):
        assert f"super/{term}" in logged and f"sub/{term}" in logged
    assert {"loss_kd", "total_loss", "super/total_loss", "sub/total_loss"} <= logged
    # the detector's own statistics are kept apart per pass
    assert "super/rpn/num_pos_anchors" in logged and "sub/rpn/num_pos_anchors" in logged


def test_alpha_one_equals_a_plain_detectron2_step(bn_setup):
    cfg, detector, batch = bn_setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.ALPHA = 1.0
    ours, plain = copy.deepcopy(detector), copy.deepcopy(detector)

    step = ADNTrainStep(
        SelfDistillationModel.from_config(cfg, ours), [batch], build_optimizer(cfg, ours)
    )
    reference = SimpleTrainer(plain, [batch], build_optimizer(cfg, plain))
    for trainer in (step, reference):
        torch.manual_seed(7)  # same proposal sampling in the super-net pass
        with EventStorage(0):
            trainer.iter = 0
            trainer.run_step()

    # the same step to the bit: Detectron2's own, on terms whose sum is the super-net's
    # losses (the students' terms are weighted 0)
    for (name, p), q in zip(ours.named_parameters(), plain.parameters()):
        assert torch.equal(p, q), name


def test_plain_mode_trains_the_super_net_only(bn_setup):
    cfg, detector, batch = bn_setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.ENABLED = False
    detector = copy.deepcopy(detector)
    wrapper = SelfDistillationModel.from_config(cfg, detector)
    assert not wrapper.uses_every_parameter  # DDP must look for the unused skip norms
    groups = _param_groups(detector)
    skip_before = [p.detach().clone() for p in groups["skip_norms"]]
    step = ADNTrainStep(wrapper, [batch], build_optimizer(cfg, detector))
    with EventStorage(0) as storage:
        step.iter = 0
        step.run_step()
        logged = set(storage.histories())
    assert all(torch.equal(p, b) for p, b in zip(groups["skip_norms"], skip_before))
    assert {"loss_cls", "loss_mask", "total_loss"} <= logged  # Detectron2's own names
    assert not any(k.startswith("sub/") or k == "loss_kd" for k in logged)


def test_non_finite_loss_names_term_and_iteration():
    class NaNModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, data):
            nan = self.w * float("nan")
            return {"super/loss_cls": self.w * 1.0, "loss_kd": nan}

    model = NaNModel()
    step = ADNTrainStep(model, [None], torch.optim.SGD(model.parameters(), lr=0.1))
    with EventStorage(5) as storage:
        step.iter = storage.iter = 5
        with pytest.raises(FloatingPointError, match=r"iteration=5.*loss_kd"):
            step.run_step()


def test_subnet_sampling_is_seeded_per_iteration(bn_setup):
    cfg, detector, _ = bn_setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.SUBNETS = ["TTTT", "TTFF"]
    cfg.SEED = 3
    a = SelfDistillationModel.from_config(cfg, detector)
    b = SelfDistillationModel.from_config(cfg, detector)
    picks = [a.students_for_iteration(i)[0] for i in range(40)]
    assert picks == [b.students_for_iteration(i)[0] for i in range(40)]
    assert set(picks) == {"TTTT", "TTFF"}
    assert not a.uses_every_parameter  # TTFF leaves res4/res5 skip norms unused

    cfg.MODEL.ADN.DISTILL.SUBNETS = ["TTTT"]
    assert SelfDistillationModel.from_config(cfg, detector).uses_every_parameter


def test_config_errors(bn_setup):
    cfg, detector, _ = bn_setup
    bad = cfg.clone()
    bad.MODEL.ADN.DISTILL.FEATURES = ["p3", "p7"]
    with pytest.raises(ValueError, match="p7"):
        SelfDistillationModel.from_config(bad, detector)
    bad = cfg.clone()
    bad.MODEL.ADN.DISTILL.ALPHA = 1.5
    with pytest.raises(ValueError, match="ALPHA"):
        SelfDistillationModel.from_config(bad, detector)


def test_amp_step_runs_on_cpu_with_bfloat16(bn_setup):
    cfg, detector, batch = bn_setup
    detector = copy.deepcopy(detector)
    param = detector.backbone.bottom_up.res3[1].conv1.weight  # a skippable block
    before = param.detach().clone()
    step = ADNAMPTrainStep(
        SelfDistillationModel.from_config(cfg, detector), [batch], build_optimizer(cfg, detector)
    )
    with EventStorage(0) as storage:
        step.iter = 0
        step.run_step()
        assert {"super/loss_cls", "sub/loss_cls", "loss_kd"} <= set(storage.histories())
    assert step.precision == torch.bfloat16  # CPU autocast; float16 + GradScaler on CUDA
    assert not torch.equal(param, before)
    assert "grad_scaler" in step.state_dict()


def test_trainer_leaves_the_model_at_the_configured_depth(tiny_dataset, tmp_path):
    cfg = tiny_cfg(str(tmp_path))
    cfg.merge_from_list(["MODEL.ADN.DEPTH", "TTFF", "SOLVER.MAX_ITER", "1"])
    cfg.TEST.ADN.DEPTHS = ["TTFF"]  # the final evaluation, at one depth only
    trainer = ADNTrainer(cfg)
    seen = []
    trainer.detector.backbone.register_forward_pre_hook(
        lambda module, inputs: seen.append(get_depth(trainer.detector))
    )
    trainer.train()  # 1 iteration, then Detectron2's final evaluation
    assert seen[:2] == ["FFFF", "TTTT"]  # the super-net, then the student
    assert len(seen) > 2 and set(seen[2:]) == {"TTFF"}  # the evaluation
    assert get_depth(trainer.detector) == "TTFF"
    assert trainer.checkpointer.skip_norm_init == "copy"  # MODEL.ADN.SKIP_NORM_INIT reaches it
    cfg.defrost()
    cfg.MODEL.ADN.SKIP_NORM_INIT = "error"
    assert ADNTrainer(cfg).checkpointer.skip_norm_init == "error"


def test_several_students_per_iteration_average_their_terms(bn_setup):
    cfg, detector, batch = bn_setup
    cfg = cfg.clone()
    cfg.MODEL.ADN.DISTILL.SUBNETS = ["TTTT", "TFFF", "FTFT", "TTTF"]
    cfg.MODEL.ADN.DISTILL.NUM_STUDENTS = 3
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    draws = [wrapper.students_for_iteration(i) for i in range(30)]
    assert all(len(set(d)) == 3 and set(d) <= set(cfg.MODEL.ADN.DISTILL.SUBNETS) for d in draws)
    assert len({tuple(d) for d in draws}) > 1  # a new draw per iteration
    assert draws == [wrapper.students_for_iteration(i) for i in range(30)]

    seen = []
    handle = detector.backbone.register_forward_pre_hook(
        lambda module, inputs: seen.append(get_depth(detector))
    )
    try:
        with EventStorage(0):
            torch.manual_seed(0)
            losses = wrapper(batch, iteration=4)
            singles = []
            for subnet in draws[4]:
                torch.manual_seed(0)  # the same sampling as above for each pass
                teacher = wrapper._run_pass(batch, "FFFF", "super", teacher=True)
                singles.append(wrapper._student_terms(batch, teacher, subnet))
    finally:
        handle.remove()
    assert seen[:4] == ["FFFF", *draws[4]]
    kd = torch.stack([s["loss_kd"] for s in singles]).mean()  # unweighted, one per student
    kd_factor = (1 - wrapper.options.alpha) * wrapper.options.kd_weight
    torch.testing.assert_close(losses["loss_kd"], kd_factor * kd, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="NUM_STUDENTS"):
        bad = cfg.clone()
        bad.MODEL.ADN.DISTILL.NUM_STUDENTS = 0
        SelfDistillationModel.from_config(bad, detector)


def test_the_sandwich_recipe_trains_the_base_net_and_one_drawn_mixed_setting(bn_setup):
    """configs/mask_rcnn_ada_r50_sandwich.yaml's students (adadet's recipe)."""
    cfg, detector, batch = bn_setup
    cfg = cfg.clone()
    sandwich = get_cfg()
    add_adn_config(sandwich)
    sandwich.merge_from_file(str(ROOT / "configs" / "mask_rcnn_ada_r50_sandwich.yaml"))
    for key in ("SUBNETS", "NUM_STUDENTS", "ALWAYS_STUDENTS"):
        cfg.MODEL.ADN.DISTILL[key] = copy.deepcopy(sandwich.MODEL.ADN.DISTILL[key])
    mixed = [d for d in all_depths(4) if d not in ("FFFF", "TTTT")]
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    draws = [wrapper.students_for_iteration(i) for i in range(40)]
    assert all(len(d) == 2 and d[0] == "TTTT" and d[1] in mixed for d in draws)
    assert len({d[1] for d in draws}) > 5  # the mixed one is drawn anew
    cfg.MODEL.ADN.DISTILL.ALWAYS_STUDENTS = ["base"]  # the alias names the same student
    assert [SelfDistillationModel.from_config(cfg, detector).students_for_iteration(i)
            for i in range(40)] == draws
    assert wrapper.uses_every_parameter  # the base-net runs every skip norm each step

    seen = []
    handle = detector.backbone.register_forward_pre_hook(
        lambda module, inputs: seen.append(get_depth(detector))
    )
    try:
        with EventStorage(0):
            wrapper(batch, iteration=7)
    finally:
        handle.remove()
    assert seen == ["FFFF", *draws[7]]

    bad = cfg.clone()
    bad.MODEL.ADN.DISTILL.SUBNETS = ["TTTT", "TFFF"]
    with pytest.raises(ValueError, match="ALWAYS_STUDENTS .*'TTTT'.* also in SUBNETS") as error:
        SelfDistillationModel.from_config(bad, detector)
    assert "SUBNETS ['TTTT'] with ALWAYS_STUDENTS []" in str(error.value)  # the fix
    for key, value, message in (
        ("SUBNETS", [], r"MODEL.ADN.DISTILL.SUBNETS is empty: the students are drawn from it. "
                        r"Fix: give the settings to draw from, e.g. \['base'\]"),
        ("SUBNETS", ["TTF"], r"MODEL.ADN.DISTILL.SUBNETS \['TTF'\]: Invalid depth setting 'TTF'"),
        ("ALWAYS_STUDENTS", ["TTTT", "base"],
         r"MODEL.ADN.DISTILL.ALWAYS_STUDENTS \['TTTT', 'base'\]: .* more than once"),
    ):
        bad = cfg.clone()
        bad.MODEL.ADN.DISTILL[key] = value
        with pytest.raises(ValueError, match=message):
            SelfDistillationModel.from_config(bad, detector)
    drawn_only = cfg.clone()
    drawn_only.MODEL.ADN.DISTILL.ALWAYS_STUDENTS = ["TFFF"]
    drawn_only.MODEL.ADN.DISTILL.SUBNETS = ["TTFF", "FTTT"]
    assert not SelfDistillationModel.from_config(drawn_only, detector).uses_every_parameter
