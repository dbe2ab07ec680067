"""RetinaNet whose head adapts: the ``retinanet_head`` letter of a depth setting.

RetinaNet's class and box subnets each run ``NUM_CONVS`` 3x3 convs (4, at the FPN's
width) on every level from P3 to P7, the largest part of the detector's cost. In
``SkippableRetinaNetHead`` the last convs of each subnet refine, ``relu(x + norm(conv(x)))``
(:class:`~adadet.layers.SkippableRefinement`, zero at initialisation): of ``L`` convs the
first ``min(L-1, (L+1)//2)`` are mandatory, as in ADN's stages (2 of 4), the others of both
subnets skip together. ``SkippableRetinaNet`` is Detectron2's ``RetinaNet`` with that head
(``MODEL.META_ARCHITECTURE``; RetinaNet builds its head itself, not from a registry).
"""
from typing import List

import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead

from ..depth import AdaptiveDepthModule, SkipFlags
from ..layers import SkippableRefinement, zero_init_refinement
from .adaptive_parts import RETINANET_HEAD_PART, config_part_setting
from .backbone.resnet_adn import num_mandatory_blocks

__all__ = ["SkippableRetinaNet", "SkippableRetinaNetHead"]


def _conv_groups(subnet: nn.Sequential) -> List[List[nn.Module]]:
    """The subnet's layers grouped per conv: [conv, (norm), relu], ..."""
    groups: List[List[nn.Module]] = []
    for layer in subnet:
        if isinstance(layer, nn.Conv2d):
            groups.append([])
        groups[-1].append(layer)
    return groups


class SkippableRetinaNetHead(RetinaNetHead, AdaptiveDepthModule):
    """``RetinaNetHead`` whose skippable convs refine and skip with the letter ``T``."""

    num_adaptive_stages = 1
    depth_part = RETINANET_HEAD_PART

    @configurable
    def __init__(self, *, input_shape, num_classes, num_anchors, conv_dims, depth: str = "F",
                 **kwargs):
        super().__init__(input_shape=input_shape, num_classes=num_classes,
                         num_anchors=num_anchors, conv_dims=conv_dims, **kwargs)
        first = num_mandatory_blocks(len(conv_dims))
        if len(conv_dims) < 2 or len({input_shape[0].channels, *conv_dims}) != 1:
            raise ValueError(
                "SkippableRetinaNetHead needs MODEL.RETINANET.NUM_CONVS >= 2 convs of the FPN's "
                f"width (its skippable convs add their output to their input), not {conv_dims}."
            )
        refinements = []
        for name in ("cls_subnet", "bbox_subnet"):
            layers: List[nn.Module] = []
            for index, group in enumerate(_conv_groups(getattr(self, name))):
                if index < first:
                    layers += group
                    continue
                *branch, relu = group
                assert isinstance(relu, nn.ReLU), f"{name} ends a conv with {relu}"
                refinement = SkippableRefinement(nn.Sequential(*branch), F.relu)
                zero_init_refinement(refinement)
                layers.append(refinement)
                refinements.append(refinement)
            setattr(self, name, nn.Sequential(*layers))
        self.refinements = tuple(refinements)
        self.set_depth(depth)

    @classmethod
    def from_config(cls, cfg, input_shape):
        args = super().from_config(cfg, input_shape)
        args["depth"] = config_part_setting(cfg, RETINANET_HEAD_PART)
        return args

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        for refinement in self.refinements:
            refinement.skips = flags[0]


@META_ARCH_REGISTRY.register()
class SkippableRetinaNet(RetinaNet):
    """Detectron2's ``RetinaNet`` with :class:`SkippableRetinaNetHead`."""

    @classmethod
    def from_config(cls, cfg):
        args = super().from_config(cfg)
        shapes = args["backbone"].output_shape()
        args["head"] = SkippableRetinaNetHead(
            cfg, [shapes[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
        )
        return args
