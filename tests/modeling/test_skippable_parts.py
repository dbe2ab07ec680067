"""The neck and heads that adapt (configs/mask_rcnn_ada_r50_whole.yaml): each skipped part
is the identity and never calls its refinement; the depth setting names every part; a
4-letter setting runs the neck and heads in full."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import adadet
from adadet.depth import depth_layout, get_depth, using_depth
from adadet.layers import SkippableRefinement, zero_init_refinement
from adadet.modeling import SelfDistillationModel
from adadet.modeling.adaptive_parts import config_adaptive_parts
from adn_testing import make_project_cfg, synthetic_batch

WHOLE = "mask_rcnn_ada_r50_whole.yaml"


def whole_cfg(**overrides):
    return make_project_cfg(
        WHOLE,
        MODEL__RESNETS__DEPTH=18,
        MODEL__RESNETS__RES2_OUT_CHANNELS=64,
        MODEL__RESNETS__NORM="BN",
        MODEL__ROI_HEADS__NUM_CLASSES=3,
        **overrides,
    )


@pytest.fixture(scope="module")
def whole_model():
    torch.manual_seed(0)
    model = build_model(whole_cfg()).eval()
    # refinements start at zero; make them do something, so that skipping them shows
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SkippableRefinement):
                for p in module.branch.parameters():
                    p.normal_(0, 0.05)
    return model


def refinements_of(model):
    return {
        "fpn": list(model.backbone.output_convs),
        "rpn_head": [model.proposal_generator.rpn_head.conv],
        "mask_head": list(model.roi_heads.mask_head.refinements),
    }


def test_the_layout_names_every_adaptive_part_in_the_order_of_its_letters(whole_model):
    layout = depth_layout(whole_model)
    assert layout.parts == (("backbone", 4), ("fpn", 1), ("rpn_head", 1), ("mask_head", 1))
    # what the builders read from the config before the model exists is the same layout
    assert config_adaptive_parts(whole_cfg()) == [name for name, _ in layout.parts[1:]]
    assert len(layout.all()) == 2 ** 7
    assert layout.expand(["super", "base", "TTFF"]) == ["FFFFFFF", "TTTTTTT", "TTFFFFF"]


def test_a_backbone_setting_runs_the_neck_and_heads_in_full(whole_model):
    with using_depth(whole_model, "TTFF") as name:
        assert name == get_depth(whole_model) == "TTFFFFF"
        assert whole_model.backbone.bottom_up.depth == "TTFF"
        assert not any(r.skips for rs in refinements_of(whole_model).values() for r in rs)


def test_a_setting_of_another_length_names_the_layout(whole_model):
    with pytest.raises(ValueError, match=r"7 letters: backbone \(4\), fpn \(1\), rpn_head"):
        adadet.set_depth(whole_model, "TTFFT")
    assert get_depth(whole_model) == "FFFFFFF"  # nothing was switched


@pytest.mark.parametrize("part, letter", [("fpn", 4), ("rpn_head", 5), ("mask_head", 6)])
def test_each_skipped_part_is_the_identity_and_calls_none_of_its_refinements(
    whole_model, part, letter
):
    setting = "".join("T" if i == letter else "F" for i in range(7))
    calls = []
    refinements = refinements_of(whole_model)
    handles = [
        r.branch.register_forward_hook(lambda *_, p=p: calls.append(p))
        for p, rs in refinements.items()
        for r in rs
    ]
    inputs = synthetic_batch(num_images=1)
    try:
        with torch.no_grad(), using_depth(whole_model, setting):
            whole_model(inputs)
            x = torch.randn(2, 256, 8, 8).abs()
            for r in refinements[part]:
                assert r(x) is x
    finally:
        for h in handles:
            h.remove()
    assert part not in calls and set(calls) == set(refinements) - {part}


def test_each_skipped_part_costs_less_by_its_refinements(whole_model):
    from fvcore.nn import FlopCountAnalysis

    def flops(module, *inputs):
        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total()

    images = torch.rand(1, 3, 128, 160)
    features = [torch.rand(1, 256, 32, 40), torch.rand(1, 256, 16, 20)]
    rois = torch.rand(5, 256, 14, 14)
    parts = {
        "fpn": (whole_model.backbone, (images,)),
        "rpn_head": (whole_model.proposal_generator.rpn_head, (features,)),
        # its layers in order, as MaskRCNNConvUpsampleHead.layers runs them
        "mask_head": (torch.nn.Sequential(*whole_model.roi_heads.mask_head), (rois,)),
    }
    for letter, (part, (module, inputs)) in zip((4, 5, 6), parts.items()):
        with using_depth(whole_model, "FFFF"):
            full = flops(module, *inputs)
        with using_depth(whole_model, "".join("T" if i == letter else "F" for i in range(7))):
            skipped = flops(module, *inputs)
        assert skipped < full, part


def test_a_refinement_starts_at_zero_so_running_it_changes_nothing():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    refinement = SkippableRefinement(conv, torch.relu)
    zero_init_refinement(refinement)
    x = torch.rand(1, 4, 5, 5)
    assert torch.equal(refinement(x), x)  # relu(x + 0) of a non-negative input
    with torch.no_grad():
        conv.weight.normal_()
    assert not torch.equal(refinement(x), x)
    refinement.skips = True
    assert refinement(x) is x


def test_model_adn_depth_starts_every_part_at_its_letters():
    model = build_model(whole_cfg(MODEL__ADN__DEPTH="TFTFTFT"))
    assert get_depth(model) == "TFTFTFT"
    assert model.backbone.bottom_up.depth == "TFTF"
    with pytest.raises(ValueError, match="MODEL.ADN.DEPTH 'TFTFT'"):
        build_model(whole_cfg(MODEL__ADN__DEPTH="TFTFT"))


def test_a_backbone_only_detector_keeps_its_4_letter_settings():
    cfg = make_project_cfg(
        "mask_rcnn_ada_r50.yaml", MODEL__RESNETS__DEPTH=18, MODEL__RESNETS__RES2_OUT_CHANNELS=64,
        MODEL__RESNETS__NORM="BN",
    )
    model = build_model(cfg)
    assert depth_layout(model).parts == (("backbone", 4),)
    assert adadet.set_depth(model, "TTFF") == get_depth(model) == "TTFF"
    with pytest.raises(ValueError, match="expected 4 letters"):
        adadet.set_depth(model, "TTFFFFF")


def test_self_distillation_trains_the_whole_base_net_as_the_student():
    torch.manual_seed(0)
    cfg = whole_cfg()
    detector = build_model(cfg)
    wrapper = SelfDistillationModel.from_config(cfg, detector).train()
    assert wrapper.super_depth == "FFFFFFF"
    assert wrapper.options.subnets == ("TTTTTTT",)
    assert wrapper.uses_every_parameter
    ran = []
    detector.roi_heads.mask_head.register_forward_pre_hook(
        lambda *_: ran.append(get_depth(detector))
    )
    with EventStorage(0):
        terms = wrapper(synthetic_batch(num_images=2))
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    assert ran == ["FFFFFFF", "TTTTTTT"]
    # the refinements learn from the super-net's pass
    assert detector.backbone.output_convs[0].branch.weight.grad.abs().sum() > 0


def test_retinanet_whole_skips_half_of_each_subnet_and_trains():
    cfg = make_project_cfg(
        "retinanet_ada_r50_whole.yaml",
        MODEL__RESNETS__DEPTH=18,
        MODEL__RESNETS__RES2_OUT_CHANNELS=64,
        MODEL__RESNETS__NORM="BN",
        MODEL__RETINANET__NUM_CLASSES=3,
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    assert depth_layout(model).parts == (("backbone", 4), ("fpn", 1), ("retinanet_head", 1))
    head = model.head
    # 2 of 4 convs per subnet refine (ADN's rule: min(L-1, (L+1)//2) mandatory)
    assert len(head.refinements) == 4
    assert sum(isinstance(m, SkippableRefinement) for m in head.cls_subnet) == 2
    calls = []
    for r in head.refinements:
        r.branch.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad(), using_depth(model.eval(), "FFFFFT"):
        model(synthetic_batch(num_images=1))
    assert not calls
    model.train()
    with EventStorage(0):
        terms = SelfDistillationModel.from_config(cfg, model)(synthetic_batch(num_images=2))
    sum(terms.values()).backward()
    assert calls  # the super-net ran the refinements
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
