"""Torchvision-layout ViT weights (official ViT-ADN or plain torchvision): their conversion
to ViT-ADN's names (adadet.checkpoint.vit_keys), loading through ADNCheckpointer (i.e.
MODEL.WEIGHTS) without a conversion step, and the converter tool's .pkl.

The conversion tests use torchvision's real ViT-B/16 layout; the others a tiny ViT (embed
64, 64 px pretraining grid of 4x4 patches).
"""
import logging
import pickle

import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import EncoderBlock
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from adadet.checkpoint import (
    ADNCheckpointer,
    CheckpointFormatError,
    CheckpointMismatchError,
    SkipNormsMissingError,
)
from adadet.checkpoint.vit_keys import (
    ADN_VIT,
    TORCHVISION_VIT,
    convert_vit_checkpoint,
    detect_vit_layout,
    model_vit_structure,
)
from adadet.modeling.backbone.vit_adn import VIT_SIZES, ViTADN
from adn_testing import ROOT, load_tool, make_adn_cfg

TINY = dict(embed_dim=64, num_blocks=12, num_heads=4, pretrain_img_size=64)
TINY_MANDATORY = [0, 1, 3, 4, 6, 7, 9, 10]


def _tiny_vit_cfg(num_blocks=8):  # 8: 4 groups of 2, one mandatory, one skippable
    return make_adn_cfg(
        backbone="build_vit_adn_sfp_backbone",
        MODEL__VIT_ADN__EMBED_DIM=64,
        MODEL__VIT_ADN__NUM_BLOCKS=num_blocks,
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


def load_vit_state_dict(vit, state_dict, source="checkpoint"):
    """Convert for ``vit`` (its structure and mandatory blocks) and load every weight."""
    checkpoint = convert_vit_checkpoint(
        state_dict,
        source,
        expected=model_vit_structure(vit),
        num_mandatory_per_group=vit.num_mandatory_per_group,
    )
    vit.load_state_dict(checkpoint["model"], strict=True)
    return checkpoint


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


# -- conversion of torchvision / official ADN layouts ----------------------------------


@pytest.fixture(scope="module")
def vit_b_state_dict():
    torch.manual_seed(0)
    return torchvision.models.vit_b_16(weights=None).state_dict()


def _with_skip_norms(state_dict, blocks):
    """An official-ADN-layout state dict: distinct random ln_*_skip in ``blocks``."""
    generator = torch.Generator().manual_seed(1)
    official = dict(state_dict)
    for i in blocks:
        for norm in ("ln_1", "ln_2"):
            for entry in ("weight", "bias"):
                key = f"encoder.layers.encoder_layer_{i}.{norm}_skip.{entry}"
                official[key] = torch.rand(768, generator=generator) + 2.0
    return official


def test_official_layout_converts_and_loads_into_vit_b(vit_b_state_dict):
    official = _with_skip_norms(vit_b_state_dict, TINY_MANDATORY)
    assert detect_vit_layout(official) == ADN_VIT
    assert detect_vit_layout(vit_b_state_dict) == TORCHVISION_VIT
    vit = ViTADN(**VIT_SIZES["B"])
    conversion = load_vit_state_dict(vit, official, source="adn_vit_b.pth")
    assert sorted(conversion["dropped_keys"]) == [
        "class_token", "heads.head.bias", "heads.head.weight"
    ]
    assert conversion["num_skip_norms_copied"] == 0
    assert conversion["mandatory_blocks"] == TINY_MANDATORY
    ours = vit.state_dict()
    layer = "encoder.layers.encoder_layer_{}.".format
    pairs = {
        "patch_embed.weight": "conv_proj.weight",
        "pos_embed": "encoder.pos_embedding",
        "final_norm.bias": "encoder.ln.bias",
        "blocks.5.attn.qkv.weight": layer(5) + "self_attention.in_proj_weight",
        "blocks.5.attn.proj.bias": layer(5) + "self_attention.out_proj.bias",
        "blocks.11.mlp.fc1.weight": layer(11) + "mlp.0.weight",
        "blocks.11.mlp.fc2.weight": layer(11) + "mlp.3.weight",
        "blocks.2.norm1.weight": layer(2) + "ln_1.weight",  # skippable: one norm set
        "blocks.3.norm1.norm.weight": layer(3) + "ln_1.weight",
        "blocks.3.norm1.norm_skip.weight": layer(3) + "ln_1_skip.weight",
        "blocks.10.norm2.norm_skip.bias": layer(10) + "ln_2_skip.bias",
    }
    for ours_key, theirs in pairs.items():
        assert torch.equal(ours[ours_key], official[theirs]), ours_key
    assert not torch.equal(
        ours["blocks.3.norm1.norm.weight"], ours["blocks.3.norm1.norm_skip.weight"]
    )

    # A global-attention block computes what torchvision's encoder block computes.
    reference = EncoderBlock(12, 768, 3072, dropout=0.0, attention_dropout=0.0).eval()
    reference.load_state_dict(
        {
            k[len(layer(4)):]: v
            for k, v in official.items()
            if k.startswith(layer(4)) and "_skip" not in k
        }
    )
    tokens = torch.randn(2, 3, 5, 768)
    with torch.no_grad():
        expected = reference(tokens.reshape(2, 15, 768)).reshape(2, 3, 5, 768)
        torch.testing.assert_close(vit.blocks[4].eval()(tokens), expected, rtol=1e-4, atol=1e-4)


def test_plain_torchvision_weights_get_skip_norms_copied(vit_b_state_dict, caplog):
    with caplog.at_level(logging.INFO):
        conversion = convert_vit_checkpoint(vit_b_state_dict, source="vit_b_16.pth")
    assert "copies of their main norms" in caplog.text
    assert conversion["layout"] == TORCHVISION_VIT and conversion["num_skip_norms_copied"] == 16
    converted = conversion["model"]
    for i in TINY_MANDATORY:
        for norm in ("norm1", "norm2"):
            for entry in ("weight", "bias"):
                main = converted[f"blocks.{i}.{norm}.norm.{entry}"]
                skip = converted[f"blocks.{i}.{norm}.norm_skip.{entry}"]
                assert torch.equal(main, skip) and main.data_ptr() != skip.data_ptr()
    with pytest.raises(SkipNormsMissingError, match="no skip norms"):
        convert_vit_checkpoint(vit_b_state_dict, skip_norm_init="error")


def _tiny_torchvision_state_dict(hidden_dim=64, num_layers=12, image_size=64):
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=image_size, patch_size=16, num_layers=num_layers, num_heads=4,
        hidden_dim=hidden_dim, mlp_dim=4 * hidden_dim,
    )
    return vit.state_dict()


def test_mismatched_checkpoints_are_refused_with_the_fix():
    tiny = _tiny_torchvision_state_dict()
    vit = ViTADN(**TINY)
    load_vit_state_dict(vit, tiny)  # fits
    with pytest.raises(CheckpointMismatchError, match=r"EMBED_DIM: 64.*NUM_HEADS"):
        load_vit_state_dict(ViTADN(**dict(TINY, embed_dim=32)), tiny)
    with pytest.raises(CheckpointMismatchError, match="NUM_BLOCKS: 12"):
        load_vit_state_dict(ViTADN(**dict(TINY, num_blocks=8)), tiny)
    with pytest.raises(CheckpointMismatchError, match="PRETRAIN_IMG_SIZE: 64"):
        load_vit_state_dict(ViTADN(**dict(TINY, pretrain_img_size=96)), tiny)
    truncated = {k: v for k, v in tiny.items() if "encoder_layer_7.mlp.3" not in k}
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.7\.mlp\.fc2\.weight"):
        load_vit_state_dict(vit, truncated)
    extra = dict(tiny, **{"encoder.layers.encoder_layer_0.adapter.weight": torch.zeros(1)})
    with pytest.raises(CheckpointFormatError, match="encoder_layer_0.adapter.weight"):
        load_vit_state_dict(vit, extra)
    misplaced = dict(tiny)
    for norm in ("ln_1_skip", "ln_2_skip"):  # skip norms in every block, not the model's 8
        for i in range(12):
            misplaced[f"encoder.layers.encoder_layer_{i}.{norm}.weight"] = torch.ones(64)
            misplaced[f"encoder.layers.encoder_layer_{i}.{norm}.bias"] = torch.zeros(64)
    with pytest.raises(CheckpointMismatchError, match="every block of a group.*nothing to skip"):
        load_vit_state_dict(vit, misplaced)  # no NUM_MANDATORY_BLOCKS builds that split
    first_only = dict(tiny)  # skip norms in the first block of each group: a buildable split
    for i in (0, 3, 6, 9):
        for norm in ("ln_1_skip", "ln_2_skip"):
            first_only[f"encoder.layers.encoder_layer_{i}.{norm}.weight"] = torch.ones(64)
            first_only[f"encoder.layers.encoder_layer_{i}.{norm}.bias"] = torch.zeros(64)
    with pytest.raises(CheckpointMismatchError, match=r"NUM_MANDATORY_BLOCKS: \[1, 1, 1, 1\]"):
        load_vit_state_dict(vit, first_only)
    with pytest.raises(CheckpointFormatError, match="no torchvision-layout ViT"):
        convert_vit_checkpoint({"conv1.weight": torch.zeros(1)})


def _with_tiny_skip_norms(state_dict):
    official = dict(state_dict)
    for i in TINY_MANDATORY:
        for norm in ("ln_1_skip", "ln_2_skip"):
            official[f"encoder.layers.encoder_layer_{i}.{norm}.weight"] = torch.full((64,), 2.0)
            official[f"encoder.layers.encoder_layer_{i}.{norm}.bias"] = torch.full((64,), 0.5)
    return official


def test_converter_pkl_loads_through_detectron2s_name_matching(tmp_path, capsys):
    """The tool's .pkl reaches the ViT inside a larger module (the pyramid's bottom_up)
    through Detectron2's own checkpointer and its matching of names."""
    tiny = _tiny_torchvision_state_dict()
    torch.save(_with_tiny_skip_norms(tiny), tmp_path / "tiny_adn.pth")
    converter = load_tool("convert_adn_weights")
    converter.convert(str(tmp_path / "tiny_adn.pth"), str(tmp_path / "tiny_adn.pkl"))
    printed = capsys.readouterr().out
    assert "official ViT-ADN" in printed and "MODEL.VIT_ADN.EMBED_DIM: 64" in printed
    with open(tmp_path / "tiny_adn.pkl", "rb") as f:
        assert pickle.load(f)["matching_heuristics"] is True
    backbone = build_backbone(_tiny_vit_cfg(num_blocks=12), ShapeSpec(channels=3))
    DetectionCheckpointer(backbone).load(str(tmp_path / "tiny_adn.pkl"))
    vit = backbone.bottom_up
    qkv = tiny["encoder.layers.encoder_layer_7.self_attention.in_proj_weight"]
    assert torch.equal(vit.blocks[7].attn.qkv.weight, qkv)
    assert torch.equal(vit.blocks[9].norm2.norm_skip.bias, torch.full((64,), 0.5))
    assert torch.equal(vit.final_norm.weight, tiny["encoder.ln.weight"])


def test_converter_config_file_refuses_weights_of_another_vit(tmp_path, capsys):
    torch.save(_tiny_torchvision_state_dict(), tmp_path / "tiny.pth")
    vit_b = str(ROOT / "configs" / "mask_rcnn_ada_vit_b.yaml")
    args = ["--config-file", vit_b, str(tmp_path / "tiny.pth"), str(tmp_path / "tiny.pkl")]
    assert load_tool("convert_adn_weights").main(args) == 1
    err = capsys.readouterr().err
    assert "the model (config) is" in err and "MODEL.VIT_ADN.EMBED_DIM: 64" in err
    assert not (tmp_path / "tiny.pkl").exists()
