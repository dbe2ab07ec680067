"""MODEL.ADN.SWITCHABLE_NORMS False (the paper's ablation without switchable norms): one
norm set for every depth setting, in ResNet-ADN and ViT-ADN; skipping is unchanged."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from adadet.layers import SwitchableNormConv2d
from adadet.layers.switchable_layernorm import SwitchableLayerNorm
from adadet.modeling import ViTADN
from adn_testing import make_adn_cfg

INPUT = ShapeSpec(channels=3)


def test_resnet_without_switchable_norms_has_one_norm_set_and_still_skips():
    torch.manual_seed(0)
    cfg = make_adn_cfg(18, "build_resnet_adn_backbone", MODEL__ADN__SWITCHABLE_NORMS=False)
    shared = build_backbone(cfg, INPUT).eval()
    assert not any(isinstance(m, SwitchableNormConv2d) for m in shared.modules())
    assert not any("norm_skip" in key for key in shared.state_dict())
    # the same parameters as the paper's model, less its skip norms
    paper = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), INPUT)
    assert set(shared.state_dict()) == {k for k in paper.state_dict() if "norm_skip" not in k}

    ran = []
    for stage in shared.stages:
        stage.skippable_blocks[0].register_forward_hook(lambda m, a, o: ran.append(m))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        shared.set_depth("TFTF")
        skipping = shared(x)["res5"]
        assert len(ran) == 2  # res3 and res5 ran their skippable block
        shared.set_depth("FFFF")
        full = shared(x)["res5"]
    assert (skipping - full).abs().max() > 1e-3


def test_switched_shortcut_norms_need_switchable_norms():
    cfg = make_adn_cfg(
        18, "build_resnet_adn_backbone",
        MODEL__ADN__SWITCHABLE_NORMS=False, MODEL__ADN__SWITCH_SHORTCUT_NORM=True,
    )
    with pytest.raises(ValueError, match="SWITCHABLE_NORMS False gives no block any"):
        build_backbone(cfg, INPUT)


def test_vit_without_switchable_norms_has_plain_layernorms():
    kwargs = dict(embed_dim=32, num_blocks=8, num_heads=2, pretrain_img_size=32)
    shared, paper = ViTADN(**kwargs, switchable_norms=False), ViTADN(**kwargs)
    assert not any(isinstance(m, SwitchableLayerNorm) for m in shared.modules())
    assert sum(isinstance(m, SwitchableLayerNorm) for m in paper.modules()) == 2 * 4
    assert set(shared.state_dict()) == {
        k.replace(".norm.", ".") for k in paper.state_dict() if "norm_skip" not in k
    }
