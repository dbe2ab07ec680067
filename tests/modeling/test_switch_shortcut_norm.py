"""MODEL.ADN.SWITCH_SHORTCUT_NORM: the shortcut norm of a mandatory first block switches too."""
import torch
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from adadet.checkpoint import ADNCheckpointer
from adadet.layers import SwitchableNormConv2d
from adn_testing import make_adn_cfg

INPUT = ShapeSpec(channels=3)


def test_shortcut_norms_switch_with_their_stage_and_load_from_plain_weights(tmp_path):
    torch.manual_seed(0)
    cfg = make_adn_cfg(50, "build_resnet_adn_backbone", MODEL__ADN__SWITCH_SHORTCUT_NORM=True)
    bottom_up = build_backbone(cfg, INPUT)
    shortcuts = [stage[0].shortcut for stage in bottom_up.stages]
    assert all(isinstance(s, SwitchableNormConv2d) for s in shortcuts)
    # 3 convs in each of the 9 mandatory blocks, plus the 4 shortcuts
    assert sum(isinstance(m, SwitchableNormConv2d) for m in bottom_up.modules()) == 27 + 4
    ran = []
    for s in shortcuts:
        s.norm.register_forward_hook(lambda m, a, o, s=s: ran.append((s, "norm")))
        s.norm_skip.register_forward_hook(lambda m, a, o, s=s: ran.append((s, "norm_skip")))
    bottom_up.set_depth("TFTF")
    with torch.no_grad():
        bottom_up(torch.randn(1, 3, 64, 64))
    assert [name for _, name in ran] == ["norm_skip", "norm", "norm_skip", "norm"]

    # an ordinary ResNet has no shortcut skip norm: it starts as a copy of the main one
    torchvision_state = torchvision.models.resnet50().state_dict()
    torch.save(torchvision_state, tmp_path / "r50.pth")
    ADNCheckpointer(bottom_up).load(str(tmp_path / "r50.pth"))
    res3 = bottom_up.res3[0].shortcut
    expected = torchvision_state["layer2.0.downsample.1.running_mean"]
    assert torch.equal(res3.norm.running_mean, expected)
    assert torch.equal(res3.norm_skip.running_mean, expected)

    # off (the authors' and the default): shortcuts keep one norm
    plain = build_backbone(make_adn_cfg(50, "build_resnet_adn_backbone"), INPUT)
    assert not any(isinstance(stage[0].shortcut, SwitchableNormConv2d) for stage in plain.stages)
