"""A simple feature pyramid on ViT-ADN's single stride-16 map (ViTDet, arXiv 2203.16527).

Each level is made from the last map alone: stride 4 by two 2x2 deconvolutions, stride 8
by one, stride 16 as is, stride 32 by 2x2 max-pooling; then a 1x1 and a 3x3 conv (with
norm) bring each to ``out_channels``. A top block adds stride 64 (``p6``, max-pooled, for
the RPN) or strides 64 and 128 (``p6``/``p7`` convs, for RetinaNet).

The pyramid does not change with depth; switching the depth of the whole model
(:func:`adadet.set_depth`) reaches the ViT-ADN inside it.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

from ...layers.channel_layernorm import ln_as_channel_layernorm
from .vit_adn import build_vit_adn_backbone

__all__ = [
    "pyramid_norm",
    "ViTSimpleFeaturePyramid",
    "build_vit_adn_sfp_backbone",
    "build_retinanet_vit_adn_sfp_backbone",
]


def pyramid_norm(norm: str, channels: int) -> Optional[nn.Module]:
    """Detectron2's ``get_norm(norm, channels)`` ("" gives None), ``"LN"`` a channel
    LayerNorm on every Detectron2 version (:func:`~adadet.layers.ln_as_channel_layernorm`)."""
    return get_norm(ln_as_channel_layernorm(norm), channels)


def _resampling(in_channels: int, scale: float, norm: str) -> Tuple[nn.Sequential, int]:
    """The layers taking the map to ``scale`` times its resolution, and their output
    channels (upsampling halves the channels at each 2x step, as ViTDet)."""
    half = in_channels // 2
    if scale == 4.0:
        inner_norm = pyramid_norm(norm, half)
        layers = [nn.ConvTranspose2d(in_channels, half, kernel_size=2, stride=2)]
        layers += [inner_norm] if inner_norm is not None else []
        layers += [nn.GELU(), nn.ConvTranspose2d(half, half // 2, kernel_size=2, stride=2)]
        return nn.Sequential(*layers), half // 2
    if scale == 2.0:
        return nn.Sequential(nn.ConvTranspose2d(in_channels, half, 2, stride=2)), half
    if scale == 1.0:
        return nn.Sequential(), in_channels
    if scale == 0.5:
        return nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2)), in_channels
    raise ValueError(
        f"Scale factor {scale} is not supported by the simple feature pyramid: use "
        "MODEL.VIT_ADN.SCALE_FACTORS from 4.0, 2.0, 1.0, 0.5."
    )


class ViTSimpleFeaturePyramid(Backbone):
    """Levels ``p<k>`` (stride 2^k) from one map of a ViT backbone (``bottom_up``)."""

    def __init__(
        self,
        bottom_up: Backbone,
        in_feature: str,
        out_channels: int,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        top_block: Optional[nn.Module] = None,
        norm: str = "LN",
    ):
        """
        Args:
            bottom_up: the ViT (e.g. :class:`ViTADN`); ``in_feature`` names its map.
            out_channels: channels of every output level.
            scale_factors: levels made from the map, as scale factors (4.0 = stride 4...).
            top_block: makes the next coarser levels from the level its ``in_feature``
                names (``LastLevelMaxPool``: p6 from p5; ``LastLevelP6P7(c, c, "p5")``:
                p6 and p7 from p5).
            norm: norm of the level convs (:func:`pyramid_norm`).
        """
        super().__init__()
        input_shape = bottom_up.output_shape()[in_feature]
        if sorted(scale_factors, reverse=True) != list(scale_factors) or not scale_factors:
            raise ValueError(f"Scale factors {list(scale_factors)}: give them largest first.")
        self.bottom_up = bottom_up
        self.in_feature = in_feature
        self.top_block = top_block
        self.levels = nn.ModuleDict()
        strides = {}
        use_bias = norm == ""
        for scale in scale_factors:
            stride = int(input_shape.stride / scale)
            name = f"p{int(math.log2(stride))}"
            layers, channels = _resampling(input_shape.channels, scale, norm)
            lateral = Conv2d(
                channels, out_channels, 1, bias=use_bias, norm=pyramid_norm(norm, out_channels)
            )
            output = Conv2d(
                out_channels,
                out_channels,
                3,
                padding=1,
                bias=use_bias,
                norm=pyramid_norm(norm, out_channels),
            )
            for conv in (lateral, output):
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
            layers.add_module("lateral", lateral)
            layers.add_module("output", output)
            self.levels[name] = layers
            strides[name] = stride
        if top_block is not None:
            if top_block.in_feature not in strides:
                raise ValueError(
                    f"The top block reads {top_block.in_feature}, which the pyramid does not "
                    f"make (it makes {list(strides)})."
                )
            last = int(math.log2(max(strides.values())))
            for k in range(top_block.num_levels):
                strides[f"p{last + k + 1}"] = 2 ** (last + k + 1)
        self._out_features = list(strides)
        self._out_feature_strides = strides
        self._out_feature_channels = {name: out_channels for name in strides}
        # Inputs padded to the coarsest pyramid stride keep every level aligned (as FPN).
        self._size_divisibility = max(
            input_shape.stride, *(s for n, s in strides.items() if n in self.levels)
        )

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feature = self.bottom_up(x)[self.in_feature]
        results = {name: level(feature) for name, level in self.levels.items()}
        if self.top_block is not None:
            extra = self.top_block(results[self.top_block.in_feature])
            names = self._out_features[len(results) :]
            results.update(zip(names, extra))
        return results


def _sfp(cfg, input_shape, top_block_for) -> ViTSimpleFeaturePyramid:
    vit = build_vit_adn_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.VIT_ADN.OUT_CHANNELS
    return ViTSimpleFeaturePyramid(
        vit,
        vit._out_features[0],
        out_channels,
        scale_factors=[float(s) for s in cfg.MODEL.VIT_ADN.SCALE_FACTORS],
        top_block=top_block_for(out_channels),
        norm=cfg.MODEL.VIT_ADN.PYRAMID_NORM,
    )


@BACKBONE_REGISTRY.register()
def build_vit_adn_sfp_backbone(cfg, input_shape: ShapeSpec):
    """ViT-ADN + simple feature pyramid, p2..p6 (p6 max-pooled from p5): Mask/Faster R-CNN."""
    return _sfp(cfg, input_shape, lambda channels: LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_vit_adn_sfp_backbone(cfg, input_shape: ShapeSpec):
    """ViT-ADN + simple feature pyramid with p6/p7 convs from p5: RetinaNet (use
    ``MODEL.VIT_ADN.SCALE_FACTORS: [2.0, 1.0, 0.5]`` for p3..p7)."""
    return _sfp(cfg, input_shape, lambda channels: LastLevelP6P7(channels, channels, "p5"))
