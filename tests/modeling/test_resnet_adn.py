"""ResNet-ADN: the split rule, depth settings, skipping, switchable norms, FPN outputs."""
import copy

import numpy as np
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone.resnet import build_resnet_backbone

import adadet
from adadet.depth import all_depths, parse_depth
from adadet.layers import SwitchableNormConv2d
from adadet.modeling.backbone.resnet_adn import num_mandatory_blocks

from adn_testing import make_adn_cfg

INPUT = ShapeSpec(channels=3)


def _skippable_counts(bottom_up):
    return [len(stage) - stage.num_mandatory for stage in bottom_up.stages]


@pytest.mark.parametrize(
    "depth, skippable",
    [(18, [1, 1, 1, 1]), (34, [1, 2, 3, 1]), (50, [1, 2, 3, 1]), (101, [1, 2, 11, 1])],
)
def test_split_rule(depth, skippable):
    bottom_up = build_backbone(make_adn_cfg(depth, "build_resnet_adn_backbone"), INPUT)
    assert _skippable_counts(bottom_up) == skippable
    assert [num_mandatory_blocks(n) for n in (3, 4, 6, 3)] == [2, 2, 3, 2]


def test_num_mandatory_blocks_from_config():
    cfg = make_adn_cfg(50, "build_resnet_adn_backbone", MODEL__ADN__NUM_MANDATORY_BLOCKS=[1, 3, 5, 2])
    assert _skippable_counts(build_backbone(cfg, INPUT)) == [2, 1, 1, 1]
    cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS = [1, 3]
    with pytest.raises(ValueError, match="one number per stage"):
        build_backbone(cfg, INPUT)


def test_a_stage_without_skippable_blocks_is_refused():
    # [2, 2, 2, 2] on R-18 made every stage fully mandatory: FFFF ran the same net as TTTT.
    cfg = make_adn_cfg(18, "build_resnet_adn_backbone", MODEL__ADN__NUM_MANDATORY_BLOCKS=[2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"gives res2, a stage of 2 blocks, 2 mandatory blocks; "
                       r"it must keep between 1 and 1 .*Fix: give res2 a number in 1\.\.1"):
        build_backbone(cfg, INPUT)
    cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS = [1, 1, 0, 1]
    with pytest.raises(ValueError, match="gives res4, a stage of 2 blocks, 0 mandatory"):
        build_backbone(cfg, INPUT)
    cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS = [1, 1, 1, 1]
    assert _skippable_counts(build_backbone(cfg, INPUT)) == [1, 1, 1, 1]


@pytest.mark.parametrize("depth", [50, 101])
def test_fpn_shapes_and_strides_at_every_depth(depth):
    torch.manual_seed(0)
    backbone = build_backbone(make_adn_cfg(depth), INPUT).eval()
    shapes = backbone.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert backbone.size_divisibility == 32
    x = torch.randn(1, 3, 96, 128)
    outputs = {}
    with torch.no_grad():
        for setting in all_depths():
            adadet.set_depth(backbone, setting)
            features = backbone(x)
            for name, feature in features.items():
                stride = shapes[name].stride
                assert feature.shape == (1, 256, -(-96 // stride), -(-128 // stride)), (setting, name)
            outputs[setting] = features["p2"]
    # each setting is a different sub-network
    assert len({round(float(out.abs().sum()), 3) for out in outputs.values()}) == 16


def test_bad_depth_settings_are_refused():
    backbone = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), INPUT)
    for bad in ["FFF", "FFFFF", "TXFF", "", "supernet", "1111"]:
        with pytest.raises(ValueError, match="Invalid depth setting"):
            backbone.set_depth(bad)
    with pytest.raises(ValueError, match="one flag per stage"):
        backbone.set_depth([True, False])
    assert backbone.depth == "FFFF"  # a refused setting changes nothing
    backbone.depth = "base"
    assert backbone.depth == "TTTT"
    backbone.depth = "tftf"
    assert backbone.depth == "TFTF"


def test_depth_sequences_are_read_as_letters_or_bools_never_by_truthiness():
    # bool("F") is True: these used to select TTTT.
    backbone = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), INPUT)
    for setting in (list("FFFF"), ("F", "F", "F", "F"), [False] * 4, np.zeros(4, dtype=bool)):
        backbone.set_depth("TTTT")
        backbone.set_depth(setting)
        assert backbone.depth == "FFFF", setting
    adadet.set_depth(backbone, ("T", "F", "F", "F"))
    assert backbone.depth == "TFFF"
    backbone.depth = list("ftft")
    assert backbone.depth == "FTFT"
    backbone.depth = [np.bool_(True), False, True, np.bool_(False)]
    assert backbone.depth == "TFTF"
    for bad in (b"FFFF", [1, 0, 0, 0], [True, "F", False, False], ["FF", "FF"], [None] * 4, 4):
        with pytest.raises(TypeError, match="a depth setting is a string of 4 letters"):
            backbone.set_depth(bad)
    with pytest.raises(TypeError, match=r"No depth setting was given \(None"):
        adadet.set_depth(backbone, None)
    assert backbone.depth == "TFTF"  # a refused setting changes nothing
    cfg = make_adn_cfg(18, "build_resnet_adn_backbone")
    cfg.merge_from_list(["MODEL.ADN.DEPTH", "None"])
    with pytest.raises(TypeError, match="MODEL.ADN.DEPTH None.*'FFFF' for the super-net"):
        build_backbone(cfg, INPUT)


def test_context_manager_restores_previous_depth():
    backbone = build_backbone(make_adn_cfg(18), INPUT)
    adadet.set_depth(backbone, "TFFF")
    with adadet.using_depth(backbone, "base") as name:
        assert name == "TTTT" and adadet.get_depth(backbone) == "TTTT"
    assert adadet.get_depth(backbone) == "TFFF"
    with pytest.raises(RuntimeError):
        with adadet.using_depth(backbone, "TTTF"):
            raise RuntimeError("interrupted")
    assert adadet.get_depth(backbone) == "TFFF"


def test_depth_from_config():
    cfg = make_adn_cfg(18, MODEL__ADN__DEPTH="TTFF")
    assert adadet.get_depth(build_backbone(cfg, INPUT)) == "TTFF"
    cfg.MODEL.ADN.DEPTH = "TTF"
    with pytest.raises(ValueError, match="Invalid depth setting 'TTF'"):
        build_backbone(cfg, INPUT)


def _count_calls(modules):
    counts = {module: 0 for module in modules}

    def hook(module, inputs, output):
        counts[module] += 1

    handles = [module.register_forward_hook(hook) for module in modules]
    return counts, handles


def test_skipped_blocks_do_not_run_and_get_no_gradient():
    torch.manual_seed(0)
    bottom_up = build_backbone(make_adn_cfg(50, "build_resnet_adn_backbone"), INPUT)
    blocks = [block for stage in bottom_up.stages for block in stage]
    counts, handles = _count_calls(blocks)
    bottom_up.set_depth("TFTF")
    out = bottom_up(torch.randn(2, 3, 64, 64))
    sum(feature.sum() for feature in out.values()).backward()
    for handle in handles:
        handle.remove()
    for stage, skips in zip(bottom_up.stages, parse_depth("TFTF")):
        for index, block in enumerate(stage):
            runs = index < stage.num_mandatory or not skips
            assert counts[block] == int(runs)
            if not runs:
                assert all(p.grad is None for p in block.parameters())
                continue
            convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
            assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
            for conv in convs:
                if isinstance(conv, SwitchableNormConv2d):  # only the norm in use learns
                    used, unused = (conv.norm_skip, conv.norm) if skips else (conv.norm, conv.norm_skip)
                    assert used.weight.grad is not None and unused.weight.grad is None


def test_skip_norms_used_exactly_in_mandatory_blocks_of_skipping_stages():
    bottom_up = build_backbone(make_adn_cfg(50, "build_resnet_adn_backbone"), INPUT)
    convs = [m for m in bottom_up.modules() if isinstance(m, SwitchableNormConv2d)]
    # 3 normalized convs in each of the [2, 2, 3, 2] mandatory blocks; no shortcut, no stem
    assert len(convs) == 3 * 9
    assert not isinstance(bottom_up.stem.conv1, SwitchableNormConv2d)
    for stage in bottom_up.stages:
        assert not isinstance(stage[0].shortcut, SwitchableNormConv2d)
        for block in stage.skippable_blocks:
            assert not any(isinstance(m, SwitchableNormConv2d) for m in block.modules())
    main_counts, h1 = _count_calls([c.norm for c in convs])
    skip_counts, h2 = _count_calls([c.norm_skip for c in convs])
    bottom_up.set_depth("FTFT")
    with torch.no_grad():
        bottom_up(torch.randn(1, 3, 64, 64))
    for stage, skips in zip(bottom_up.stages, parse_depth("FTFT")):
        for block in stage.mandatory_blocks:
            for conv in (block.conv1, block.conv2, block.conv3):
                assert skip_counts[conv.norm_skip] == int(skips)
                assert main_counts[conv.norm] == int(not skips)
    for handle in h1 + h2:
        handle.remove()


def test_super_net_equals_plain_resnet_with_same_weights():
    torch.manual_seed(0)
    cfg = make_adn_cfg(50, "build_resnet_adn_backbone")
    adn = build_backbone(cfg, INPUT)
    plain = build_resnet_backbone(cfg, INPUT)
    # give the main norms non-trivial statistics so the comparison means something
    for module in adn.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    incompatible = plain.load_state_dict(adn.state_dict(), strict=False)
    assert incompatible.missing_keys == []
    assert incompatible.unexpected_keys and all(
        ".norm_skip." in key for key in incompatible.unexpected_keys
    )
    adn.eval(), plain.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        adn_out, plain_out = adn(x), plain(x)
    for name in plain_out:
        # The same modules run the same ops, so the outputs agree to float rounding at most
        # (CPU kernels may choose their algorithm per machine); a wrong norm would change
        # them by far more than this.
        torch.testing.assert_close(adn_out[name], plain_out[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["BN", "SyncBN", "FrozenBN", "GN"])
def test_every_norm_type_gets_a_skip_norm_of_its_type(norm):
    bottom_up = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone", norm=norm), INPUT)
    convs = [m for m in bottom_up.modules() if isinstance(m, SwitchableNormConv2d)]
    assert convs and all(type(c.norm_skip) is type(c.norm) for c in convs)
    assert all(c.norm_skip is not c.norm for c in convs)
    bottom_up.set_depth("TTTT")
    assert bottom_up(torch.randn(2, 3, 64, 64))["res5"].shape == (2, 512, 2, 2)


def test_freeze_at_freezes_both_norm_sets():
    cfg = make_adn_cfg(50, "build_resnet_adn_backbone", MODEL__BACKBONE__FREEZE_AT=2)
    bottom_up = build_backbone(cfg, INPUT)
    for block in bottom_up.res2.mandatory_blocks:
        for conv in (block.conv1, block.conv2, block.conv3):
            assert isinstance(conv.norm, FrozenBatchNorm2d)
            assert isinstance(conv.norm_skip, FrozenBatchNorm2d)
            assert not conv.weight.requires_grad
    for block in bottom_up.res3.mandatory_blocks:
        assert isinstance(block.conv1.norm_skip, torch.nn.BatchNorm2d)
        assert block.conv1.norm_skip.weight.requires_grad


def test_conversion_to_frozen_bn_converts_both_sets():
    bottom_up = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), INPUT)
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bottom_up)
    norms = [m for m in frozen.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms == []
    convs = [m for m in frozen.modules() if isinstance(m, SwitchableNormConv2d)]
    assert convs and all(isinstance(c.norm_skip, FrozenBatchNorm2d) for c in convs)


def test_switching_depth_copies_no_weights():
    backbone = build_backbone(make_adn_cfg(18), INPUT)
    before = {name: p.data_ptr() for name, p in backbone.state_dict().items()}
    for setting in ("TTTT", "TFTF", "FFFF"):
        adadet.set_depth(backbone, setting)
    after = {name: p.data_ptr() for name, p in backbone.state_dict().items()}
    assert before == after


def test_deepcopy_keeps_depth_switch_shared_within_the_copy():
    backbone = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), INPUT)
    clone = copy.deepcopy(backbone)
    clone.set_depth("TTTT")
    assert backbone.depth == "FFFF"
    assert all(c.switch.active for c in clone.modules() if isinstance(c, SwitchableNormConv2d))
    assert not any(c.switch.active for c in backbone.modules() if isinstance(c, SwitchableNormConv2d))
