"""The neck and head parts that can adapt, and the letters of ``MODEL.ADN.DEPTH`` that
each part's builder starts at.

A built detector reads its depth layout from its modules (:func:`adadet.depth.depth_layout`);
a builder runs before the detector exists, so it reads the same layout from the config:
the backbone's letters, then one letter per adaptive part that the config selects, in the
order of :data:`ADAPTIVE_PARTS` (the order in which a detector holds them).
"""
from typing import List

from ..depth import BACKBONE_PART, DepthLayout

__all__ = [
    "ADAPTIVE_PARTS",
    "FPN_PART",
    "MASK_HEAD_PART",
    "RETINANET_HEAD_PART",
    "RPN_HEAD_PART",
    "config_adaptive_parts",
    "config_depth_layout",
    "config_part_setting",
]

FPN_PART = "fpn"
RPN_HEAD_PART = "rpn_head"
MASK_HEAD_PART = "mask_head"
RETINANET_HEAD_PART = "retinanet_head"

#: part -> (the config key that selects its module, the registered names that adapt)
ADAPTIVE_PARTS = {
    FPN_PART: (
        "MODEL.BACKBONE.NAME",
        ("build_resnet_adn_skippable_fpn_backbone",
         "build_retinanet_resnet_adn_skippable_fpn_backbone"),
    ),
    RPN_HEAD_PART: ("MODEL.RPN.HEAD_NAME", ("SkippableRPNHead",)),
    MASK_HEAD_PART: ("MODEL.ROI_MASK_HEAD.NAME", ("SkippableMaskRCNNConvUpsampleHead",)),
    RETINANET_HEAD_PART: ("MODEL.META_ARCHITECTURE", ("SkippableRetinaNet",)),
}


def _config_value(cfg, key: str):
    node = cfg
    for name in key.split("."):
        node = node[name]
    return node


def _builds(cfg, part: str) -> bool:
    """Whether the detector of ``cfg`` contains that part at all."""
    if part == RPN_HEAD_PART:
        return (
            cfg.MODEL.META_ARCHITECTURE in ("GeneralizedRCNN", "ProposalNetwork")
            and cfg.MODEL.PROPOSAL_GENERATOR.NAME == "RPN"
        )
    if part == MASK_HEAD_PART:
        return cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.MODEL.MASK_ON
    return True


def config_adaptive_parts(cfg) -> List[str]:
    """The adaptive neck and head parts of the detector of ``cfg``, in letter order."""
    return [
        part
        for part, (key, names) in ADAPTIVE_PARTS.items()
        if _config_value(cfg, key) in names and _builds(cfg, part)
    ]


def config_depth_layout(cfg, num_backbone_flags: int = 4) -> DepthLayout:
    """The depth layout of the detector of ``cfg`` (every adadet backbone has 4 letters:
    ResNet's res2..res5, ViT's 4 block groups)."""
    return DepthLayout(
        ((BACKBONE_PART, num_backbone_flags),)
        + tuple((name, 1) for name in config_adaptive_parts(cfg))
    )


def config_part_setting(cfg, part: str, num_backbone_flags: int = 4) -> str:
    """The letters of ``part`` in ``MODEL.ADN.DEPTH`` (the backbone's, or one adaptive
    part's): what its builder starts at. A bad setting raises, naming the key."""
    layout = config_depth_layout(cfg, num_backbone_flags)
    try:
        return layout.part_setting(cfg.MODEL.ADN.DEPTH, part)
    except (TypeError, ValueError) as e:
        raise type(e)(f"MODEL.ADN.DEPTH {cfg.MODEL.ADN.DEPTH!r}: {e}") from None
