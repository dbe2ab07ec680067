"""Key layouts of ViT weights, and their conversion to ViT-ADN's names.

Layouts recognised from the keys: ``"adn-vit"``, the official ImageNet ViT-ADN checkpoints
(torchvision's ``vit_*_16`` names plus ``ln_1_skip`` / ``ln_2_skip`` in each mandatory
block), and ``"torchvision-vit"``, the same without skip norms, which then start as copies
of the main ones (``skip_norm_init="copy"``, logged). ``class_token`` and ``heads`` are
dropped: a detector has no use for them.
"""

import logging
import math
import re
from collections.abc import Mapping
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from ..utils.messages import first_few
from .errors import (
    CheckpointFormatError,
    CheckpointMismatchError,
    SkipNormsMissingError,
    check_skip_norm_init,
    unknown_keys_error,
)
from .key_rules import compile_rules, rename_keys

ADN_VIT = "adn-vit"
TORCHVISION_VIT = "torchvision-vit"

_LAYER = r"encoder\.layers\.encoder_layer_(\d+)\."
_LAYER_KEY = re.compile(_LAYER + "(.+)")
_SKIP_NORM_KEY = re.compile(_LAYER + r"ln_[12]_skip\.(weight|bias)")
#: torchvision / official ViT-ADN key -> ViT-ADN name (None: dropped). Norms are named
#: ``blocks.<i>.norm<k>[_skip].*`` here; afterwards they become ``norm<k>.norm`` /
#: ``norm<k>.norm_skip`` in mandatory blocks, and stay plain ``norm<k>`` in skippable ones.
_VIT_RULES = compile_rules(
    [
        (r"conv_proj\.(weight|bias)", r"patch_embed.\1"),
        (r"encoder\.pos_embedding", "pos_embed"),
        (r"encoder\.ln\.(weight|bias)", r"final_norm.\1"),
        (r"class_token|heads\..+", None),
        (_LAYER + r"self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
        (_LAYER + r"self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        # mlp.linear_1 / linear_2: torchvision < 0.12
        (_LAYER + r"mlp\.(?:0|linear_1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
        (_LAYER + r"mlp\.(?:3|linear_2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
        (_LAYER + r"ln_([12])(_skip)?\.(weight|bias)", r"blocks.\1.norm\2\3.\4"),
    ]
)
_RENAMED_NORM = re.compile(r"blocks\.(\d+)\.norm([12])(_skip)?\.(weight|bias)")


def detect_vit_layout(keys) -> Optional[str]:
    """``"adn-vit"``, ``"torchvision-vit"`` or None (not a torchvision-layout ViT)."""
    keys = list(keys)
    if "conv_proj.weight" not in keys or not any(_LAYER_KEY.match(k) for k in keys):
        return None
    return ADN_VIT if any(_SKIP_NORM_KEY.fullmatch(k) for k in keys) else TORCHVISION_VIT


class ViTStructure(NamedTuple):
    """What a ViT's weights fix (the number of heads is not among them)."""

    embed_dim: int
    num_blocks: int
    patch_size: int
    mlp_dim: int
    pretrain_img_size: int

    def __str__(self) -> str:
        grid = self.pretrain_img_size // self.patch_size
        return (
            f"a ViT with embed dim {self.embed_dim}, {self.num_blocks} blocks, MLP width "
            f"{self.mlp_dim}, patch {self.patch_size}, position grid {grid}x{grid} "
            f"({self.pretrain_img_size} px)"
        )

    def config_lines(self) -> List[str]:
        """The ``MODEL.VIT_ADN`` keys that build this structure."""
        ratio = self.mlp_dim / self.embed_dim
        lines = [
            f"MODEL.VIT_ADN.EMBED_DIM: {self.embed_dim}",
            f"MODEL.VIT_ADN.NUM_BLOCKS: {self.num_blocks}",
            f"MODEL.VIT_ADN.PATCH_SIZE: {self.patch_size}",
            f"MODEL.VIT_ADN.MLP_RATIO: {round(ratio, 4)!r}",  # a float, as the key is
            f"MODEL.VIT_ADN.PRETRAIN_IMG_SIZE: {self.pretrain_img_size}",
        ]
        heads = {384: 6, 768: 12, 1024: 16, 1280: 16}.get(self.embed_dim)
        lines.append(
            f"MODEL.VIT_ADN.NUM_HEADS: {heads} (the standard size's; heads are not in the weights)"
            if heads
            else f"MODEL.VIT_ADN.NUM_HEADS: the checkpoint's (a divisor of {self.embed_dim}; "
            "heads are not in the weights)"
        )
        return lines


def vit_structure(state_dict: Mapping, source: str = "checkpoint") -> ViTStructure:
    """The structure of a torchvision-layout ViT state dict."""
    missing = [k for k in ("conv_proj.weight", "encoder.pos_embedding") if k not in state_dict]
    layers = {int(_LAYER_KEY.match(k).group(1)) for k in state_dict if _LAYER_KEY.match(k)}
    fc1 = [k for k in state_dict if re.search(r"encoder_layer_\d+\.mlp\.(0|linear_1)\.weight$", k)]
    if missing or not layers or not fc1:
        raise CheckpointFormatError(
            f"'{source}' holds no torchvision-layout ViT: it lacks "
            f"{first_few(missing or ['encoder.layers.encoder_layer_<i>.mlp.0.weight'])}; its "
            f"keys begin {first_few(sorted(state_dict), 3)}. Fix: give a torchvision vit_*_16 "
            "or official ViT-ADN checkpoint."
        )
    patch = state_dict["conv_proj.weight"]
    tokens = state_dict["encoder.pos_embedding"].shape[1] - 1  # slot 0: the class token
    side = int(round(math.sqrt(tokens)))
    if side * side != tokens:
        raise CheckpointMismatchError(
            f"'{source}': encoder.pos_embedding holds {tokens} patch positions (plus the class "
            "token), not a square grid; ViT-ADN resizes square grids only."
        )
    return ViTStructure(
        embed_dim=int(patch.shape[0]),
        num_blocks=max(layers) + 1,
        patch_size=int(patch.shape[-1]),
        mlp_dim=int(state_dict[fc1[0]].shape[0]),
        pretrain_img_size=side * int(patch.shape[-1]),
    )


def model_vit_structure(vit) -> ViTStructure:
    """The structure of a built :class:`~adadet.modeling.backbone.vit_adn.ViTADN`."""
    tokens = vit.pos_embed.shape[1] - 1
    return ViTStructure(
        embed_dim=vit.embed_dim,
        num_blocks=vit.num_blocks,
        patch_size=vit.patch_size,
        mlp_dim=vit.blocks[0].mlp.fc1.out_features,
        pretrain_img_size=int(round(math.sqrt(tokens))) * vit.patch_size,
    )


def _expected_shapes(s: ViTStructure, num_mandatory_per_group) -> Dict[str, tuple]:
    """The shapes of the ViT-ADN that ``s`` builds, from the model itself (on the meta
    device: nothing is allocated or initialised)."""
    from ..modeling.backbone.vit_adn import ViTADN  # no import cycle at load

    with torch.device("meta"):
        vit = ViTADN(
            embed_dim=s.embed_dim,
            num_blocks=s.num_blocks,
            num_heads=1,  # heads leave no trace in the shapes
            patch_size=s.patch_size,
            mlp_ratio=(s.mlp_dim + 0.5) / s.embed_dim,  # ViTADN rounds embed_dim * ratio down
            pretrain_img_size=s.pretrain_img_size,
            num_mandatory_per_group=num_mandatory_per_group,
        )
    return {k: tuple(v.shape) for k, v in vit.state_dict().items()}


def _mandatory_fix(blocks_with_skip: List[int], num_blocks: int) -> str:
    """How to build the network whose mandatory blocks are ``blocks_with_skip``."""
    group = num_blocks // 4
    counts = [sum(1 for b in blocks_with_skip if b // group == g) for g in range(4)]
    prefixes = [g * group + i for g, count in enumerate(counts) for i in range(count)]
    if prefixes == blocks_with_skip and all(counts) and all(n < group for n in counts):
        return f"set MODEL.ADN.NUM_MANDATORY_BLOCKS: {counts}."
    if prefixes == blocks_with_skip and all(counts):
        return (
            "the checkpoint has skip norms in every block of a group, so that group would have "
            "nothing to skip, which ViT-ADN cannot build; use a checkpoint of the paper's split."
        )
    return (
        "the checkpoint's mandatory blocks are not the first blocks of each of 4 equal "
        "groups, which ViT-ADN cannot build; use a checkpoint of the paper's split."
    )


def _mismatch_fix(found: ViTStructure, expected: ViTStructure) -> str:
    """The config lines of ``found`` that differ from those of ``expected``."""
    theirs = set(expected.config_lines())
    return "; ".join(line for line in found.config_lines() if line not in theirs)


def convert_vit_checkpoint(
    state_dict: Mapping,
    source: str = "checkpoint",
    *,
    expected: Optional[ViTStructure] = None,
    num_mandatory_per_group: Optional[Sequence[int]] = None,
    skip_norm_init: str = "copy",
    logger: Optional[logging.Logger] = None,
) -> dict:
    """The checkpoint dict Detectron2 loads an official ViT-ADN or torchvision ViT state
    dict from: ViT-ADN names and ``matching_heuristics: True``, so that Detectron2 finds
    where the ViT sits in the model (``backbone.bottom_up.`` under the pyramid,
    ``backbone.`` alone); the converter writes it as a ``.pkl``.

    Args:
        expected: the model's structure (:func:`model_vit_structure`); a checkpoint of
            another one is refused, naming the config keys that would fit it.
        num_mandatory_per_group: the model's ``MODEL.ADN.NUM_MANDATORY_BLOCKS`` (empty/None:
            all but the last block of each group). Official ADN checkpoints must have
            their skip norms in exactly these blocks.
        skip_norm_init: for a checkpoint without skip norms, ``"copy"`` starts each as a
            copy of its main norm (logged), ``"error"`` raises SkipNormsMissingError.

    Raises CheckpointFormatError for keys of neither layout and CheckpointMismatchError for
    missing keys, other shapes or another structure; each message names the fix.
    """
    from ..modeling.backbone.vit_adn import mandatory_block_indexes  # no import cycle at load

    logger = logger or logging.getLogger(__name__)
    check_skip_norm_init(skip_norm_init)
    state_dict = {k: torch.as_tensor(v) for k, v in state_dict.items()}
    structure = vit_structure(state_dict, source)  # refuses anything but a ViT
    layout = detect_vit_layout(state_dict)
    if structure.num_blocks % 4:
        raise CheckpointMismatchError(
            f"'{source}' holds {structure}: its blocks cannot form ViT-ADN's 4 equal groups. "
            "Fix: use a ViT whose number of blocks is a multiple of 4 (ViT-S/B/L: 12/12/24)."
        )
    if expected is not None and structure != expected:
        raise CheckpointMismatchError(
            f"'{source}' holds {structure}; the model (config) is {expected}. Fix: build the "
            f"checkpoint's network ({_mismatch_fix(structure, expected)}), or use weights of "
            "the model's size."
        )

    converted, dropped, unknown = rename_keys(state_dict, _VIT_RULES)
    if unknown:
        raise unknown_keys_error(source, unknown, "ViT", "ViT-ADN")

    norms = {k: m for k in converted if (m := _RENAMED_NORM.fullmatch(k))}
    with_skip = sorted({int(m[1]) for m in norms.values() if m[3]})
    rule = mandatory_block_indexes(structure.num_blocks, num_mandatory_per_group)
    if with_skip and with_skip != rule:
        raise CheckpointMismatchError(
            f"'{source}' has skip norms (ln_1_skip / ln_2_skip) in blocks {with_skip}; the "
            f"model's mandatory blocks are {rule}. Fix: "
            + _mandatory_fix(with_skip, structure.num_blocks)
        )
    mandatory = set(rule)
    if not with_skip and skip_norm_init == "error":
        raise SkipNormsMissingError(
            f"'{source}' has no skip norms (ln_1_skip / ln_2_skip): it is an ordinary "
            "torchvision ViT, and skip_norm_init is 'error'. Fix: use an official ViT-ADN "
            "checkpoint, or let each skip norm start as a copy of its main norm "
            "(skip_norm_init 'copy'; tools/convert_adn_weights.py --skip-norm-init copy)."
        )

    copied = set()
    for key, m in norms.items():
        if int(m[1]) not in mandatory:
            continue  # a skippable block's norm keeps its name, blocks.<i>.norm<k>.*
        norm = f"blocks.{m[1]}.norm{m[2]}."
        converted[norm + ("norm_skip." if m[3] else "norm.") + m[4]] = converted.pop(key)
        if not with_skip:
            converted[f"{norm}norm_skip.{m[4]}"] = converted[f"{norm}norm.{m[4]}"].clone()
            copied.add(norm + "norm_skip")

    shapes = _expected_shapes(structure, num_mandatory_per_group)
    missing = [k for k in shapes if k not in converted]
    if missing:
        raise CheckpointMismatchError(
            f"'{source}' lacks {len(missing)} weights of {structure} (ViT-ADN names): "
            f"{first_few(missing)}. It is truncated or of another architecture. Fix: use a "
            "complete torchvision or official ViT-ADN checkpoint."
        )
    wrong = [
        f"{k} {tuple(v.shape)} (expected {shapes.get(k)})"
        for k, v in converted.items()
        if tuple(v.shape) != shapes.get(k)
    ]
    if wrong:
        raise CheckpointMismatchError(
            f"'{source}' has weights of inconsistent shapes for {structure}: "
            f"{first_few(wrong, 3)}. Fix: use an unmodified checkpoint."
        )
    if copied:
        logger.info(
            f"'{source}' has no skip norms (a torchvision ViT): started {len(copied)} skip "
            f"LayerNorms of the mandatory blocks {sorted(mandatory)} as copies of their main "
            "norms; training makes them diverge."
        )
    if dropped:
        logger.info(f"Dropped {len(dropped)} classifier keys of '{source}': {first_few(dropped)}.")
    return {
        "model": converted,
        "__author__": "official ViT-ADN" if layout == ADN_VIT else "torchvision ViT",
        "matching_heuristics": True,
        "layout": layout,
        "structure": structure._asdict(),
        "mandatory_blocks": sorted(mandatory),
        "num_skip_norms_copied": len(copied),
        "dropped_keys": dropped,
    }
