"""Torchvision-layout ViT weights (official ViT-ADN or plain torchvision) load through
ADNCheckpointer, i.e. through MODEL.WEIGHTS, without a conversion step."""
import torch
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from adadet.checkpoint import ADNCheckpointer
from adn_testing import make_adn_cfg


def _tiny_vit_cfg():
    return make_adn_cfg(
        backbone="build_vit_adn_sfp_backbone",
        MODEL__VIT_ADN__EMBED_DIM=64,
        MODEL__VIT_ADN__NUM_BLOCKS=8,  # 4 groups of 2: one mandatory, one skippable
        MODEL__VIT_ADN__NUM_HEADS=4,
        MODEL__VIT_ADN__PRETRAIN_IMG_SIZE=64,
        MODEL__VIT_ADN__OUT_CHANNELS=32,
    )


def _torchvision_vit_file(tmp_path):
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=64, patch_size=16, num_layers=8, num_heads=4, hidden_dim=64, mlp_dim=256
    )
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in vit.state_dict().items()}
    path = tmp_path / "vit.pth"
    torch.save({"model": state}, path)
    return path, state


def test_torchvision_vit_loads_through_the_checkpointer(tmp_path):
    backbone = build_backbone(_tiny_vit_cfg(), ShapeSpec(channels=3))
    path, state = _torchvision_vit_file(tmp_path)
    ADNCheckpointer(backbone).load(str(path))
    loaded = backbone.state_dict()
    source = "encoder.layers.encoder_layer_{}."
    assert torch.equal(loaded["bottom_up.patch_embed.weight"], state["conv_proj.weight"])
    assert torch.equal(loaded["bottom_up.blocks.0.mlp.fc1.weight"], state[source.format(0) + "mlp.0.weight"])
    assert torch.equal(loaded["bottom_up.blocks.1.norm1.weight"], state[source.format(1) + "ln_1.weight"])
    # block 0 is mandatory: its skip LayerNorm starts as a copy of the main one
    assert torch.equal(loaded["bottom_up.blocks.0.norm1.norm.weight"], state[source.format(0) + "ln_1.weight"])
    assert torch.equal(loaded["bottom_up.blocks.0.norm1.norm_skip.weight"], state[source.format(0) + "ln_1.weight"])
