"""ViT-ADN: a plain Vision Transformer whose blocks form 4 groups, each with a mandatory
and a skippable sub-path (ADN, arXiv 2312.16392), as a Detectron2 backbone.

* Blocks are split into 4 equal groups, one per letter of a depth setting ("TFFF"...). In
  each group the first blocks are mandatory and the last one is skippable (ViT-B 4 x 3:
  the base-net keeps 8 blocks; ViT-L 4 x 6: 5 + 1 per group).
* The two LayerNorms of a mandatory block are :class:`SwitchableLayerNorm` pairs
  (``norm1.norm`` / ``norm1.norm_skip``, ``norm2.norm`` / ``norm2.norm_skip``); the second
  set is used while the block's group skips. Skippable blocks and the final norm hold one.
* Absolute position embeddings with a class-token slot (torchvision's layout, so ImageNet
  weights load unchanged), bicubically resized to the input's patch grid, square or not.
  No class token is prepended: a detector uses the patch tokens only.
* Optional windowed attention in chosen blocks (ViTDet), the patch grid padded to window
  multiples; optional drop-path.
* Output: one map at stride ``patch_size`` (16), ``"last_feat"``. The simple feature
  pyramid on top of it is in :mod:`.vit_pyramid`.

Parameter names follow timm/ViTDet (``patch_embed``, ``pos_embed``, ``blocks.<i>.attn.qkv``,
``blocks.<i>.mlp.fc1``...); :mod:`adadet.checkpoint.vit_keys` maps torchvision's and the
official ADN checkpoints' names onto them one to one.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from torchvision.ops import StochasticDepth

from ...depth import BACKBONE_PART, AdaptiveDepthModule, SkipFlags
from ...layers import SkipSwitch
from ...layers.switchable_layernorm import SwitchableLayerNorm
from ..adaptive_parts import config_part_setting

__all__ = [
    "VIT_SIZES",
    "num_mandatory_vit_blocks",
    "mandatory_block_indexes",
    "interpolate_pos_embed",
    "ViTAttention",
    "ViTMlp",
    "ViTBlock",
    "ViTADN",
    "build_vit_adn_backbone",
    "vit_layerwise_lr_decay",
]

#: The standard sizes: (embed dim, blocks, heads), patch 16, MLP ratio 4.
VIT_SIZES = {
    "S": dict(embed_dim=384, num_blocks=12, num_heads=6),
    "B": dict(embed_dim=768, num_blocks=12, num_heads=12),
    "L": dict(embed_dim=1024, num_blocks=24, num_heads=16),
}
NUM_GROUPS = 4  # one group per letter of a depth setting


def num_mandatory_vit_blocks(group_size: int) -> int:
    """Mandatory blocks of a group: all but the last (at least one)."""
    return max(1, group_size - 1)


def mandatory_block_indexes(
    num_blocks: int, num_mandatory_per_group: Optional[Sequence[int]] = None
) -> List[int]:
    """Indexes of the mandatory blocks of a ViT-ADN of ``num_blocks`` blocks.

    >>> mandatory_block_indexes(12)
    [0, 1, 3, 4, 6, 7, 9, 10]
    """
    group_size = _group_size(num_blocks)
    counts = _mandatory_counts(group_size, num_mandatory_per_group)
    return [g * group_size + i for g, count in enumerate(counts) for i in range(count)]


def _group_size(num_blocks: int) -> int:
    if num_blocks <= 0 or num_blocks % NUM_GROUPS:
        raise ValueError(
            f"A ViT-ADN of {num_blocks} blocks cannot form {NUM_GROUPS} equal groups (one per "
            f"letter of a depth setting): set MODEL.VIT_ADN.NUM_BLOCKS to a multiple of "
            f"{NUM_GROUPS} (ViT-S/B: 12, ViT-L: 24)."
        )
    return num_blocks // NUM_GROUPS


def _mandatory_counts(
    group_size: int, num_mandatory_per_group: Optional[Sequence[int]]
) -> List[int]:
    if group_size < 2:
        raise ValueError(
            f"A ViT-ADN whose {NUM_GROUPS} block groups have {group_size} block each has nothing "
            "to skip: every group needs a mandatory and a skippable block. Fix: set "
            f"MODEL.VIT_ADN.NUM_BLOCKS to a multiple of {NUM_GROUPS} of at least "
            f"{2 * NUM_GROUPS} (ViT-S/B: 12, ViT-L: 24)."
        )
    if not num_mandatory_per_group:
        return [num_mandatory_vit_blocks(group_size)] * NUM_GROUPS
    counts = [int(n) for n in num_mandatory_per_group]
    if len(counts) != NUM_GROUPS:
        raise ValueError(
            f"MODEL.ADN.NUM_MANDATORY_BLOCKS has {len(counts)} entries; a ViT-ADN has "
            f"{NUM_GROUPS} block groups: give one number per group or []."
        )
    bad = [f"group {g} ({n})" for g, n in enumerate(counts) if not 1 <= n < group_size]
    if bad:
        raise ValueError(
            f"MODEL.ADN.NUM_MANDATORY_BLOCKS {counts}: a group of {group_size} blocks keeps "
            f"between 1 and {group_size - 1} mandatory blocks (at least one block to skip, or "
            f"'T' and 'F' would run the same network); out of range: {', '.join(bad)}. Fix: "
            f"give each group a number in 1..{group_size - 1}, or [] for the paper's split."
        )
    return counts


def interpolate_pos_embed(
    pos_embed: torch.Tensor, grid_hw: Tuple[int, int], has_cls_slot: bool = True
) -> torch.Tensor:
    """Position embeddings of a square pretraining grid, resized to ``grid_hw``.

    Args:
        pos_embed: ``(1, [1 +] G*G, C)``, row-major over the G x G grid (torchvision's and
            timm's layout); the class-token slot, if any, comes first and is dropped.
        grid_hw: (rows, columns) of the input's patch grid.
    Returns:
        ``(1, rows, columns, C)``; the stored grid itself when it already has that size.
    """
    tokens = pos_embed[:, 1:] if has_cls_slot else pos_embed
    side = int(round(math.sqrt(tokens.shape[1])))
    if side * side != tokens.shape[1]:
        raise ValueError(
            f"Position embeddings of {tokens.shape[1]} patches do not form a square grid."
        )
    grid = tokens.reshape(1, side, side, tokens.shape[2])
    if (side, side) == tuple(grid_hw):
        return grid
    resized = F.interpolate(
        grid.permute(0, 3, 1, 2), size=tuple(grid_hw), mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1)


class ViTAttention(nn.Module):
    """Multi-head self-attention over the tokens of a ``(B, H, W, C)`` map.

    ``qkv`` holds the query, key and value projections stacked in that order (the layout of
    torchvision's ``in_proj_weight``); ``proj`` is the output projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"Embed dim {dim} is not a multiple of {num_heads} heads: set "
                "MODEL.VIT_ADN.NUM_HEADS to a divisor of MODEL.VIT_ADN.EMBED_DIM."
            )
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, dim = x.shape
        tokens = height * width
        # (3, B, heads, tokens, head_dim)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if hasattr(F, "scaled_dot_product_attention") and not torch.jit.is_tracing():
            out = F.scaled_dot_product_attention(q, k, v)  # memory-efficient kernels
        else:
            # Explicit matmuls: what FLOP counters (fvcore traces) can see.
            weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = weights @ v
        out = out.transpose(1, 2).reshape(batch, height, width, dim)
        return self.proj(out)


class ViTMlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _split_into_windows(x: torch.Tensor, size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * windows, size, size, C)``, zero-padding H and W up to
    multiples of ``size``; also returns the padded (H, W)."""
    batch, height, width, dim = x.shape
    pad_h, pad_w = (-height) % size, (-width) % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    rows, cols = (height + pad_h) // size, (width + pad_w) // size
    x = x.reshape(batch, rows, size, cols, size, dim).transpose(2, 3)
    return x.reshape(batch * rows * cols, size, size, dim), (height + pad_h, width + pad_w)


def _merge_windows(
    windows: torch.Tensor, size: int, padded_hw: Tuple[int, int], hw: Tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_split_into_windows`, cropping the padding."""
    rows, cols = padded_hw[0] // size, padded_hw[1] // size
    dim = windows.shape[-1]
    x = windows.reshape(-1, rows, cols, size, size, dim).transpose(2, 3)
    x = x.reshape(-1, padded_hw[0], padded_hw[1], dim)
    return x[:, : hw[0], : hw[1]]


class ViTBlock(nn.Module):
    """A pre-norm transformer block on a ``(B, H, W, C)`` token map.

    ``switch`` given: a mandatory block, whose ``norm1`` / ``norm2`` are
    :class:`SwitchableLayerNorm` pairs; otherwise they are plain LayerNorms.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        window_size: int = 0,
        switch: Optional[SkipSwitch] = None,
    ):
        super().__init__()
        self.switchable = switch is not None

        def layer_norm():
            if self.switchable:
                return SwitchableLayerNorm(dim, switch, eps=norm_eps)
            return nn.LayerNorm(dim, eps=norm_eps)

        self.norm1 = layer_norm()
        self.attn = ViTAttention(dim, num_heads, qkv_bias=qkv_bias)
        # Per-sample stochastic depth ("row"); no parameters, so no checkpoint keys.
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = layer_norm()
        self.mlp = ViTMlp(dim, int(dim * mlp_ratio))
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window_size > 0:
            hw = (y.shape[1], y.shape[2])
            windows, padded_hw = _split_into_windows(y, self.window_size)
            y = _merge_windows(self.attn(windows), self.window_size, padded_hw, hw)
        else:
            y = self.attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        kind = "mandatory, switchable norms" if self.switchable else "single norm set"
        window = f", window={self.window_size}" if self.window_size else ""
        return kind + window


class ViTADN(Backbone, AdaptiveDepthModule):
    """A plain ViT with 4 block groups, each a mandatory and a skippable sub-path.

    ``depth`` (e.g. ``"TTFF"``) selects which groups skip; see :mod:`adadet.depth`.
    """

    num_adaptive_stages = NUM_GROUPS

    def __init__(
        self,
        *,
        embed_dim: int = 768,
        num_blocks: int = 12,
        num_heads: int = 12,
        patch_size: int = 16,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        drop_path_rate: float = 0.0,
        window_size: int = 0,
        window_block_indexes: Sequence[int] = (),
        pretrain_img_size: int = 224,
        num_mandatory_per_group: Optional[Sequence[int]] = None,
        switchable_norms: bool = True,
        out_feature: str = "last_feat",
        depth: str = "super",
    ):
        """
        Args:
            embed_dim, num_blocks, num_heads, patch_size, mlp_ratio, qkv_bias, norm_eps,
            drop_path_rate, window_size, window_block_indexes, pretrain_img_size: as the
                ``MODEL.VIT_ADN`` keys of the same names (see :func:`adadet.add_adn_config`).
            in_chans: channels of the input image.
            num_mandatory_per_group: mandatory blocks of each of the 4 groups; default: all
                but the last block of each group.
            switchable_norms: give mandatory blocks skip LayerNorms (the paper); False: one
                norm set for every depth setting (MODEL.ADN.SWITCHABLE_NORMS, an ablation).
            out_feature: name of the output map.
            depth: the depth setting to start at.
        """
        super().__init__()
        group_size = _group_size(num_blocks)
        self.num_mandatory_per_group = _mandatory_counts(group_size, num_mandatory_per_group)
        bad_windows = [i for i in window_block_indexes if not 0 <= i < num_blocks]
        if bad_windows:
            raise ValueError(
                f"MODEL.VIT_ADN.WINDOW_BLOCK_INDEXES {list(window_block_indexes)} names blocks "
                f"{bad_windows} of a ViT with {num_blocks} blocks (indexes 0..{num_blocks - 1})."
            )
        if pretrain_img_size % patch_size:
            raise ValueError(
                f"MODEL.VIT_ADN.PRETRAIN_IMG_SIZE {pretrain_img_size} is not a multiple of "
                f"the patch size {patch_size}."
            )
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_blocks = num_blocks

        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        grid = pretrain_img_size // patch_size
        # Slot 0 belongs to the class token of the ImageNet classifier: kept so that its
        # checkpoints load unchanged, unused by the detector.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))

        self.switches = [SkipSwitch() for _ in range(NUM_GROUPS)]
        self._block_group = [i // group_size for i in range(num_blocks)]
        self._block_skippable = [
            i % group_size >= self.num_mandatory_per_group[i // group_size]
            for i in range(num_blocks)
        ]
        windowed = set(window_block_indexes)
        self.blocks = nn.ModuleList(
            ViTBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=drop_path_rate * i / max(1, num_blocks - 1),
                norm_eps=norm_eps,
                window_size=window_size if i in windowed else 0,
                switch=None
                if self._block_skippable[i] or not switchable_norms
                else self.switches[self._block_group[i]],
            )
            for i in range(num_blocks)
        )
        self.final_norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        # No computation: each is called on its group's output, so that forward hooks (the
        # distillation of group outputs, MODEL.ADN.DISTILL.FEATURES "group1".."group4")
        # see it as an (N, C, H, W) map at any depth. No parameters, so no checkpoint key.
        self.group_outputs = nn.ModuleList(nn.Identity() for _ in range(NUM_GROUPS))
        self._group_last_block = [(g + 1) * group_size - 1 for g in range(NUM_GROUPS)]

        self._out_features = [out_feature]
        self._out_feature_channels = {out_feature: embed_dim}
        self._out_feature_strides = {out_feature: patch_size}
        self._init_weights()
        self.set_depth(depth)

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def size_divisibility(self) -> int:
        return self.patch_size

    @property
    def mandatory_block_indexes(self) -> List[int]:
        return [i for i, skippable in enumerate(self._block_skippable) if not skippable]

    @property
    def skippable_block_indexes(self) -> List[int]:
        return [i for i, skippable in enumerate(self._block_skippable) if skippable]

    def group_of(self, block_index: int) -> int:
        return self._block_group[block_index]

    def block_runs(self, block_index: int) -> bool:
        """Whether block ``block_index`` runs at the current depth setting."""
        return not (
            self._block_skippable[block_index]
            and self.switches[self._block_group[block_index]].active
        )

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        for switch, skips in zip(self.switches, flags):
            switch.active = bool(skips)

    def stage_outputs(self) -> Dict[str, nn.Module]:
        """``{"group1": ..., "group4": ...}``: modules called on each group's output
        (tokens of its last running block, as an (N, C, H, W) map)."""
        return {f"group{g + 1}": module for g, module in enumerate(self.group_outputs)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding plus position embedding, ``(B, rows, cols, C)`` tokens: the part
        of the forward before the first group, the same at every depth."""
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, rows, cols, C)
        return x + interpolate_pos_embed(self.pos_embed, (x.shape[1], x.shape[2]))

    def depth_independent_stem(self):
        return self, "embed"

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.embed(x)
        for index, block in enumerate(self.blocks):
            if self.block_runs(index):
                x = block(x)
            if index == self._group_last_block[self._block_group[index]]:
                self.group_outputs[self._block_group[index]](x.permute(0, 3, 1, 2))
        x = self.final_norm(x)
        return {self._out_features[0]: x.permute(0, 3, 1, 2)}


def _vit_kwargs(cfg) -> dict:
    if "VIT_ADN" not in cfg.MODEL or "ADN" not in cfg.MODEL:
        raise KeyError(
            "The config has no MODEL.VIT_ADN / MODEL.ADN keys: call adadet.add_adn_config(cfg) "
            "after get_cfg(), before merging a ViT-ADN config."
        )
    v = cfg.MODEL.VIT_ADN
    return dict(
        embed_dim=v.EMBED_DIM,
        num_blocks=v.NUM_BLOCKS,
        num_heads=v.NUM_HEADS,
        patch_size=v.PATCH_SIZE,
        mlp_ratio=v.MLP_RATIO,
        qkv_bias=v.QKV_BIAS,
        norm_eps=v.NORM_EPS,
        drop_path_rate=v.DROP_PATH_RATE,
        window_size=v.WINDOW_SIZE,
        window_block_indexes=list(v.WINDOW_BLOCK_INDEXES),
        pretrain_img_size=v.PRETRAIN_IMG_SIZE,
        num_mandatory_per_group=list(cfg.MODEL.ADN.NUM_MANDATORY_BLOCKS) or None,
        switchable_norms=cfg.MODEL.ADN.SWITCHABLE_NORMS,
        depth=config_part_setting(cfg, BACKBONE_PART, NUM_GROUPS),
    )


@BACKBONE_REGISTRY.register()
def build_vit_adn_backbone(cfg, input_shape: ShapeSpec):
    """ViT-ADN from ``MODEL.VIT_ADN.*``, ``MODEL.ADN.DEPTH`` and
    ``MODEL.ADN.NUM_MANDATORY_BLOCKS``: one output, ``"last_feat"`` at stride 16."""
    return ViTADN(in_chans=input_shape.channels, **_vit_kwargs(cfg))


# -- layer-wise learning-rate decay ----------------------------------------------------------


def vit_layerwise_lr_decay(model: nn.Module, decay_rate: float) -> Dict[str, float]:
    """LR multiplier of every parameter of ``model`` (by ``named_parameters`` name).

    In each :class:`ViTADN` of L blocks: patch and position embeddings get
    ``decay_rate ** (L + 1)``, block i ``decay_rate ** (L - i)``, the final norm 1.
    Everything outside a ViT (pyramid, heads) gets 1.
    """
    vits = [(name, m) for name, m in model.named_modules() if isinstance(m, ViTADN)]
    multipliers = {}
    for name, _ in model.named_parameters():
        multipliers[name] = 1.0
        for prefix, vit in vits:
            head = prefix + "." if prefix else ""
            if not name.startswith(head):
                continue
            local = name[len(head) :]
            top = vit.num_blocks + 1
            if local.startswith(("patch_embed.", "pos_embed")):
                layer = 0
            elif local.startswith("blocks."):
                layer = int(local.split(".")[1]) + 1
            else:
                layer = top
            multipliers[name] = float(decay_rate) ** (top - layer)
            break
    return multipliers
