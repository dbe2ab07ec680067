"""ROI heads whose NORM may be "LN" (ViTDet's Mask R-CNN heads) on every Detectron2 version:
adadet.modeling.roi_heads."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.layers import batch_norm as d2_norms
from detectron2.modeling.roi_heads import build_box_head, build_mask_head

from adadet.layers import ChannelLayerNorm
from adn_testing import make_project_cfg


def _head_cfg(norm):
    return make_project_cfg(
        "mask_rcnn_ada_vit_b.yaml",
        MODEL__ROI_HEADS__NUM_CLASSES=3,
        MODEL__ROI_BOX_HEAD__NORM=norm,
        MODEL__ROI_BOX_HEAD__CONV_DIM=32,
        MODEL__ROI_BOX_HEAD__FC_DIM=64,
        MODEL__ROI_MASK_HEAD__NORM=norm,
        MODEL__ROI_MASK_HEAD__CONV_DIM=32,
    )


@pytest.mark.parametrize(
    "norm, norm_type", [("LN", ChannelLayerNorm), ("GN", torch.nn.GroupNorm), ("", type(None))]
)
def test_ln_roi_heads_build_and_train_and_pass_other_norms_to_detectron2(norm, norm_type):
    torch.manual_seed(0)
    cfg = _head_cfg(norm)
    box_head = build_box_head(cfg, ShapeSpec(channels=32, height=7, width=7))
    mask_head = build_mask_head(cfg, ShapeSpec(channels=32, height=14, width=14))
    assert type(box_head).__name__ == "FastRCNNConvFCHeadLN"
    assert type(mask_head).__name__ == "MaskRCNNConvUpsampleHeadLN"
    for head in (box_head, mask_head):
        assert len(head.conv_norm_relus) == 4
        for conv in head.conv_norm_relus:
            assert type(conv.norm) is norm_type
            assert (conv.bias is None) == bool(norm)  # Detectron2: no conv bias before a norm
    assert box_head.output_shape.channels == 64
    box_head(torch.randn(5, 32, 7, 7)).sum().backward()
    mask_head.layers(torch.randn(5, 32, 14, 14)).sum().backward()  # (5, 3, 28, 28) logits
    for head in (box_head, mask_head):
        first = head.conv_norm_relus[0]
        assert first.weight.grad.abs().sum() > 0
        if norm:
            assert first.norm.weight.grad.abs().sum() > 0


def test_ln_heads_are_detectron2s_heads_with_its_layernorm():
    """Where Detectron2 has "LN" (main), its stock heads and adadet's are the same network:
    same keys, same outputs. Where it has none (v0.6), the stock heads refuse "LN"."""
    torch.manual_seed(0)
    cfg = _head_cfg("LN")
    shape = ShapeSpec(channels=32, height=7, width=7)
    ours = build_box_head(cfg, shape)
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    if not hasattr(d2_norms, "LayerNorm"):
        with pytest.raises(KeyError, match="LN"):
            build_box_head(cfg, shape)
        return
    stock = build_box_head(cfg, shape)
    assert type(stock.conv1.norm) is d2_norms.LayerNorm
    stock.load_state_dict(ours.state_dict())  # strict: the same parameter names
    x = torch.randn(4, 32, 7, 7)
    # the same computation; a tolerance well above float rounding, far below a wrong norm
    torch.testing.assert_close(ours(x), stock(x), rtol=1e-4, atol=1e-5)
    reference = d2_norms.LayerNorm(32)
    reference.load_state_dict(ours.conv1.norm.state_dict())
    assert reference.eps == ours.conv1.norm.eps
    x = torch.randn(2, 32, 5, 6) * 3 + 1
    torch.testing.assert_close(ours.conv1.norm(x), reference(x), rtol=1e-4, atol=1e-5)
