"""An FPN whose output convs are skippable refinements (the ``fpn`` letter of a setting).

Detectron2's FPN smooths each merged map (lateral 1x1 conv + the upsampled coarser map)
with a 3x3 output conv: on P2 alone that conv is about 36 GFLOPs of a Mask R-CNN at
800x1216. Here every output conv refines instead, ``merged + conv(merged)``
(:class:`~adadet.layers.SkippableRefinement`, zero at initialisation), so that skipping
them leaves the merged maps: the lateral convs and the top-down sums are the FPN's
mandatory sub-path, the output convs its skippable one. One letter switches every level.
"""
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from ...depth import AdaptiveDepthModule, SkipFlags
from ...layers import SkippableRefinement, zero_init_refinement
from ..adaptive_parts import FPN_PART, config_part_setting
from .resnet_adn import build_resnet_adn_backbone

__all__ = [
    "SkippableFPN",
    "build_resnet_adn_skippable_fpn_backbone",
    "build_retinanet_resnet_adn_skippable_fpn_backbone",
]

_OUTPUT_CONV = "fpn_output"  # Detectron2's FPN names its output convs fpn_output2..5


class SkippableFPN(FPN, AdaptiveDepthModule):
    """Detectron2's ``FPN`` (same arguments, same forward) whose output convs refine the
    merged maps and skip together with the letter ``T``."""

    num_adaptive_stages = 1
    depth_part = FPN_PART

    def __init__(self, *args, depth: str = "F", **kwargs):
        super().__init__(*args, **kwargs)
        names = [name for name, _ in self.named_children() if name.startswith(_OUTPUT_CONV)]
        refinements = {}
        for name in names:
            refinement = SkippableRefinement(getattr(self, name))
            zero_init_refinement(refinement)
            setattr(self, name, refinement)
            refinements[id(refinement.branch)] = refinement
        # FPN.forward calls the convs through this list
        self.output_convs = [refinements[id(conv)] for conv in self.output_convs]
        self.set_depth(depth)

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        for refinement in self.output_convs:
            refinement.skips = flags[0]


def _skippable_fpn(cfg, bottom_up, top_block) -> SkippableFPN:
    return SkippableFPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        depth=config_part_setting(cfg, FPN_PART, bottom_up.num_adaptive_stages),
    )


@BACKBONE_REGISTRY.register()
def build_resnet_adn_skippable_fpn_backbone(cfg, input_shape):
    """ResNet-ADN + a skippable FPN with P6 by max-pooling (Mask/Faster R-CNN)."""
    return _skippable_fpn(cfg, build_resnet_adn_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_adn_skippable_fpn_backbone(cfg, input_shape):
    """ResNet-ADN + a skippable FPN with P6/P7 from res5 (RetinaNet)."""
    bottom_up = build_resnet_adn_backbone(cfg, input_shape)
    top_block = LastLevelP6P7(bottom_up.output_shape()["res5"].channels, cfg.MODEL.FPN.OUT_CHANNELS)
    return _skippable_fpn(cfg, bottom_up, top_block)
