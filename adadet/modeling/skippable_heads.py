"""Heads whose convs are skippable refinements: the ``rpn_head`` and ``mask_head``
letters of a depth setting.

- ``SkippableRPNHead``: Detectron2's ``StandardRPNHead`` with its 3x3 conv (on P2 about
  36 GFLOPs of a Mask R-CNN at 800x1216) as a pre-activation refinement,
  ``x + conv(relu(x))``; skipped, the objectness and box-delta 1x1 convs read the FPN maps
  themselves.
- ``SkippableMaskRCNNConvUpsampleHead``: Detectron2's ``MaskRCNNConvUpsampleHead`` whose
  last convs refine, ``relu(x + conv(x))``: of its ``NUM_CONV`` convs the first
  ``min(L-1, (L+1)//2)`` are mandatory, as in ADN's stages (2 of 4), the others skip
  together.

The refinements start at zero (:func:`~adadet.layers.zero_init_refinement`).
"""
from typing import Tuple

import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.modeling import ROI_MASK_HEAD_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN_HEAD_REGISTRY, StandardRPNHead
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead

from ..depth import AdaptiveDepthModule, SkipFlags
from ..layers import SkippableRefinement, zero_init_refinement
from .adaptive_parts import MASK_HEAD_PART, RPN_HEAD_PART, config_part_setting
from .backbone.resnet_adn import num_mandatory_blocks

__all__ = ["SkippableMaskRCNNConvUpsampleHead", "SkippableRPNHead"]


def _without_activation(conv: Conv2d) -> Conv2d:
    conv.activation = None
    return conv


@RPN_HEAD_REGISTRY.register()
class SkippableRPNHead(StandardRPNHead, AdaptiveDepthModule):
    """``StandardRPNHead`` (one 3x3 conv, ``MODEL.RPN.CONV_DIMS [-1]``) whose conv refines
    its input and skips with the letter ``T``."""

    num_adaptive_stages = 1
    depth_part = RPN_HEAD_PART

    @configurable
    def __init__(self, *, in_channels: int, num_anchors: int, box_dim: int = 4,
                 conv_dims=(-1,), depth: str = "F"):
        if list(conv_dims) != [-1] and list(conv_dims) != [in_channels]:
            raise ValueError(
                f"SkippableRPNHead refines its input with one conv of its width: "
                f"MODEL.RPN.CONV_DIMS must be [-1], not {list(conv_dims)}."
            )
        super().__init__(in_channels=in_channels, num_anchors=num_anchors, box_dim=box_dim)
        conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)
        # StandardRPNHead.forward computes t = self.conv(x) for the two 1x1 predictors
        self.conv = SkippableRefinement(nn.Sequential(nn.ReLU(), conv))
        zero_init_refinement(self.conv)
        self.set_depth(depth)

    @classmethod
    def from_config(cls, cfg, input_shape):
        args = super().from_config(cfg, input_shape)
        args["depth"] = config_part_setting(cfg, RPN_HEAD_PART)
        return args

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        self.conv.skips = flags[0]


@ROI_MASK_HEAD_REGISTRY.register()
class SkippableMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead, AdaptiveDepthModule):
    """``MaskRCNNConvUpsampleHead`` whose skippable convs (the last
    ``L - num_mandatory_blocks(L)`` of ``L``) refine and skip with the letter ``T``."""

    num_adaptive_stages = 1
    depth_part = MASK_HEAD_PART

    @configurable
    def __init__(self, input_shape, *, conv_dims, depth: str = "F", **kwargs):
        super().__init__(input_shape, conv_dims=conv_dims, **kwargs)
        num_convs = len(self.conv_norm_relus)
        if num_convs < 2:
            raise ValueError(
                f"SkippableMaskRCNNConvUpsampleHead needs MODEL.ROI_MASK_HEAD.NUM_CONV >= 2 "
                f"(a mandatory conv and a skippable one), not {num_convs}."
            )
        widths = [input_shape.channels] + list(conv_dims[:-1])
        first = num_mandatory_blocks(num_convs)
        if len(set(widths[first:])) != 1:
            raise ValueError(
                f"The skippable convs of SkippableMaskRCNNConvUpsampleHead add their output to "
                f"their input, so they keep its width: MODEL.ROI_MASK_HEAD.CONV_DIM must equal "
                f"the pooled features' channels ({input_shape.channels})."
            )
        self.refinements: Tuple[SkippableRefinement, ...] = ()
        for index in range(first, num_convs):
            name = f"mask_fcn{index + 1}"
            refinement = SkippableRefinement(_without_activation(getattr(self, name)), F.relu)
            zero_init_refinement(refinement)
            setattr(self, name, refinement)  # nn.Sequential keeps its place in the order
            self.conv_norm_relus[index] = refinement
            self.refinements += (refinement,)
        self.set_depth(depth)

    @classmethod
    def from_config(cls, cfg, input_shape):
        args = super().from_config(cfg, input_shape)
        args["depth"] = config_part_setting(cfg, MASK_HEAD_PART)
        return args

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        for refinement in self.refinements:
            refinement.skips = flags[0]
