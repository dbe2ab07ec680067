"""ROI heads whose ``NORM`` may be ``"LN"`` on every Detectron2 version (ViTDet's heads).

ViTDet's Mask R-CNN puts a LayerNorm after each conv of its box and mask heads
(``ROI_BOX_HEAD.NORM`` / ``ROI_MASK_HEAD.NORM`` ``"LN"``). Detectron2 main's ``get_norm``
knows ``"LN"``, v0.6's does not (KeyError). Both accept a callable instead of a name, so
these heads are Detectron2's own with one change in ``from_config``: ``"LN"`` becomes
:class:`~adadet.layers.ChannelLayerNorm` (what main's ``detectron2.layers.LayerNorm``
computes, with the same ``weight``/``bias`` names and eps 1e-6); every other norm goes to
Detectron2 as it is.

    ROI_BOX_HEAD:
      NAME: "FastRCNNConvFCHeadLN"
      NORM: "LN"
    ROI_MASK_HEAD:
      NAME: "MaskRCNNConvUpsampleHeadLN"
      NORM: "LN"
"""
from detectron2.modeling.roi_heads import (
    ROI_BOX_HEAD_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    FastRCNNConvFCHead,
    MaskRCNNConvUpsampleHead,
)

from ..layers import ln_as_channel_layernorm

__all__ = ["FastRCNNConvFCHeadLN", "MaskRCNNConvUpsampleHeadLN"]


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHeadLN(FastRCNNConvFCHead):
    """Detectron2's ``FastRCNNConvFCHead``; ``ROI_BOX_HEAD.NORM: "LN"`` works on v0.6 too."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["conv_norm"] = ln_as_channel_layernorm(ret["conv_norm"])
        return ret


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHeadLN(MaskRCNNConvUpsampleHead):
    """Detectron2's ``MaskRCNNConvUpsampleHead``; ``ROI_MASK_HEAD.NORM: "LN"`` works on v0.6
    too."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["conv_norm"] = ln_as_channel_layernorm(ret["conv_norm"])
        return ret
