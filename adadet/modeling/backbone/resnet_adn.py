"""ResNet-ADN: Detectron2's ResNet whose stages each have a mandatory and a skippable
sub-path (ADN, arXiv 2312.16392).

It differs from :class:`detectron2.modeling.backbone.ResNet` in two places only:

* each stage is an :class:`AdaptiveStage`: its first blocks (the mandatory sub-path)
  always run, the rest (the skippable sub-path) run unless the stage's skip flag is set;
* the normalized convs of mandatory blocks are :class:`SwitchableNormConv2d`, with a
  second norm used while their stage skips. Stem, shortcuts (unless
  MODEL.ADN.SWITCH_SHORTCUT_NORM) and skippable blocks keep one.

Everything else (blocks, stem, strides, freezing, the RESNETS config keys) is
Detectron2's own: the builder calls ``build_resnet_backbone`` and converts its stages.
"""
from typing import Dict, List, Optional, Sequence

import torch.nn as nn
from detectron2.layers import CNNBlockBase, Conv2d
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import (
    BasicBlock,
    BottleneckBlock,
    ResNet,
    build_resnet_backbone,
)

from ...depth import BACKBONE_PART, AdaptiveDepthModule, SkipFlags
from ...layers import SkipSwitch, SwitchableNormConv2d
from ..adaptive_parts import config_part_setting

__all__ = ["num_mandatory_blocks", "AdaptiveStage", "ResNetADN", "build_resnet_adn_backbone"]


def num_mandatory_blocks(num_blocks: int) -> int:
    """The paper's split: the first ``min(L-1, (L+1)//2)`` of L blocks are mandatory.

    R-50 [3, 4, 6, 3] keeps [2, 2, 3, 2]; R-101 [3, 4, 23, 3] keeps [2, 2, 12, 2].
    """
    return max(1, min(num_blocks - 1, (num_blocks + 1) // 2))


class AdaptiveStage(nn.Sequential):
    """One residual stage: blocks ``[0, num_mandatory)`` always run; the others are skipped
    while ``switch.active``. Blocks keep their indices, so checkpoint keys stay
    ``res<k>.<i>.*`` as in Detectron2's ResNet."""

    def __init__(
        self,
        blocks: Sequence[CNNBlockBase],
        num_mandatory: int,
        norm: str,
        switch_shortcut_norm: bool = False,
        name: str = "stage",
        switchable_norms: bool = True,
    ):
        super().__init__(*blocks)
        if len(blocks) < 2:
            raise ValueError(
                f"{name} has {len(blocks)} block(s): an adaptive stage needs at least 2, a "
                "mandatory one and a skippable one, or its 'T' would skip nothing. Fix: use a "
                "ResNet with 2 or more blocks per stage (MODEL.RESNETS.DEPTH 18 or deeper)."
            )
        if not 1 <= num_mandatory < len(blocks):
            raise ValueError(
                f"MODEL.ADN.NUM_MANDATORY_BLOCKS gives {name}, a stage of {len(blocks)} blocks, "
                f"{num_mandatory} mandatory blocks; it must keep between 1 and {len(blocks) - 1} "
                f"(at least one block to skip, or 'T' and 'F' would run the same network). Fix: "
                f"give {name} a number in 1..{len(blocks) - 1}, or set "
                "MODEL.ADN.NUM_MANDATORY_BLOCKS: [] for the paper's split."
            )
        for block in blocks[num_mandatory:]:
            if block.stride != 1 or block.in_channels != block.out_channels:
                raise ValueError("Skippable blocks must keep the shape of their input.")
        self.num_mandatory = num_mandatory
        self.switch = SkipSwitch()
        if switch_shortcut_norm and not switchable_norms:
            raise ValueError(
                "MODEL.ADN.SWITCH_SHORTCUT_NORM True gives shortcuts skip norms, but "
                "MODEL.ADN.SWITCHABLE_NORMS False gives no block any. Fix: set one of them "
                "the other way (the paper: SWITCHABLE_NORMS True, SWITCH_SHORTCUT_NORM False)."
            )
        for block in blocks[:num_mandatory] if switchable_norms else []:
            _make_norms_switchable(block, norm, self.switch, switch_shortcut_norm)

    @property
    def skips(self) -> bool:
        return self.switch.active

    @skips.setter
    def skips(self, value: bool) -> None:
        self.switch.active = bool(value)

    @property
    def mandatory_blocks(self) -> List[CNNBlockBase]:
        return list(self)[: self.num_mandatory]

    @property
    def skippable_blocks(self) -> List[CNNBlockBase]:
        return list(self)[self.num_mandatory :]

    def forward(self, x):
        for index, block in enumerate(self):
            if index == self.num_mandatory and self.switch.active:
                break
            x = block(x)
        return x


def _make_norms_switchable(
    block: CNNBlockBase, norm: str, switch: SkipSwitch, shortcut: bool = False
) -> None:
    """Give every normalized conv of a mandatory block a skip norm; its shortcut's too only
    with ``shortcut`` (the authors switch the residual branch's norms only)."""
    if type(block) not in (BasicBlock, BottleneckBlock):
        raise NotImplementedError(
            f"ADN backbones support Detectron2's BasicBlock and BottleneckBlock, not "
            f"{type(block).__name__} (e.g. set MODEL.RESNETS.DEFORM_ON_PER_STAGE to all False)."
        )
    for name, child in list(block.named_children()):
        switched = shortcut or name != "shortcut"
        if switched and isinstance(child, Conv2d) and child.norm is not None:
            setattr(block, name, SwitchableNormConv2d.from_conv(child, norm, switch))


class ResNetADN(ResNet, AdaptiveDepthModule):
    """A ResNet with a mandatory and a skippable sub-path per stage.

    ``depth`` (e.g. ``"TTFF"``) selects which stages skip; see :mod:`adadet.depth`.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: List[List[CNNBlockBase]],
        *,
        norm: str,
        out_features: Optional[List[str]] = None,
        freeze_at: int = 0,
        num_mandatory_per_stage: Optional[Sequence[int]] = None,
        switch_shortcut_norm: bool = False,
        switchable_norms: bool = True,
        depth: str = "super",
    ):
        """
        Args:
            stem, stages, out_features, freeze_at: as for Detectron2's ``ResNet``.
            norm: the norm type of the skip norms (Detectron2's ``get_norm`` names).
            num_mandatory_per_stage: mandatory blocks of each stage; default: the paper's
                rule (:func:`num_mandatory_blocks`).
            switch_shortcut_norm: give the shortcut (downsample) convs of mandatory blocks
                a skip norm too (MODEL.ADN.SWITCH_SHORTCUT_NORM).
            switchable_norms: give mandatory blocks skip norms (the paper); False: one norm
                set shared by every depth setting (MODEL.ADN.SWITCHABLE_NORMS, an ablation).
            depth: the depth setting to start at.
        """
        # Frozen only once the skip norms exist, so that one freeze covers both norm sets.
        super().__init__(stem, stages, out_features=out_features, freeze_at=0)
        if num_mandatory_per_stage is None:
            num_mandatory_per_stage = [num_mandatory_blocks(len(s)) for s in self.stages]
        if len(num_mandatory_per_stage) != len(self.stages):
            raise ValueError(
                f"MODEL.ADN.NUM_MANDATORY_BLOCKS has {len(num_mandatory_per_stage)} entries; "
                f"the backbone has {len(self.stages)} stages: give one number per stage or []."
            )
        for index, (name, num_mandatory) in enumerate(
            zip(self.stage_names, num_mandatory_per_stage)
        ):
            stage = AdaptiveStage(
                list(self.stages[index].children()),
                int(num_mandatory),
                norm,
                switch_shortcut_norm,
                name=name,
                switchable_norms=switchable_norms,
            )
            setattr(self, name, stage)
            self.stages[index] = stage
        self.num_adaptive_stages = len(self.stages)
        self.freeze(freeze_at)
        self.set_depth(depth)

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        for stage, skips in zip(self.stages, flags):
            stage.skips = skips

    def stage_outputs(self) -> Dict[str, nn.Module]:
        """``{"res2": self.res2, ...}``: each stage returns its output."""
        return dict(zip(self.stage_names, self.stages))

    def depth_independent_stem(self):
        # Detectron2's ResNet.forward calls self.stem(x); no stage's skip flag reaches it
        return self.stem, "forward"


@BACKBONE_REGISTRY.register()
def build_resnet_adn_backbone(cfg, input_shape):
    """ResNet-ADN from config: every ``MODEL.RESNETS`` key as Detectron2 reads it, plus
    ``MODEL.ADN.NUM_MANDATORY_BLOCKS`` and ``MODEL.ADN.DEPTH``."""
    # Detectron2 builds the stem and blocks; unfrozen, since ResNetADN freezes them once
    # its skip norms exist (MODEL.BACKBONE.FREEZE_AT applies to both norm sets).
    unfrozen = cfg.clone()
    unfrozen.defrost()
    unfrozen.MODEL.BACKBONE.FREEZE_AT = 0
    resnet = build_resnet_backbone(unfrozen, input_shape)
    return ResNetADN(
        resnet.stem,
        [list(stage.children()) for stage in resnet.stages],
        norm=cfg.MODEL.RESNETS.NORM,
        out_features=list(resnet._out_features),
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        num_mandatory_per_stage=list(cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS) or None,
        switch_shortcut_norm=cfg.MODEL.ADN.SWITCH_SHORTCUT_NORM,
        switchable_norms=cfg.MODEL.ADN.SWITCHABLE_NORMS,
        depth=config_part_setting(cfg, BACKBONE_PART, len(resnet.stages)),
    )
