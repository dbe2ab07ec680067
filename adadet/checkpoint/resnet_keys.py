"""Key layouts of ResNet weights (:func:`detect_layout`), their conversion to Detectron2's
names (by the rules of :mod:`.key_rules`), and the config torchvision-style weights need.
A full Detectron2/adadet model and Caffe2/MSRA pickles are left to Detectron2, which
renames those itself.
"""

import functools
import re
from collections.abc import Mapping
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .errors import WeightsConfigError, unknown_keys_error
from .key_rules import compile_rules, rename_keys

# -- ResNet layouts --------------------------------------------------------------------------

ADN = "adn"
TORCHVISION = "torchvision"
DETECTRON2_BACKBONE = "detectron2-backbone"

_NORM_ENTRY = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _block(suffix: str):
    # torchvision's layer<i>.<j> is Detectron2's res<i+1>.<j>
    return lambda m: f"res{int(m[1]) + 1}.{m[2]}.{m.expand(suffix)}"


#: torchvision / official-ADN ResNet key -> Detectron2's name (None: the classifier, dropped).
_TORCHVISION_RULES = compile_rules(
    [
        (r"fc\.(weight|bias)", None),
        (r"conv1\.weight", "stem.conv1.weight"),
        (rf"bn1\.{_NORM_ENTRY}", r"stem.conv1.norm.\1"),
        (r"layer([1-4])\.(\d+)\.conv([1-3])\.weight", _block(r"conv\3.weight")),
        # bn<k>_skip, the official ADN skip norm, becomes conv<k>.norm_skip
        (rf"layer([1-4])\.(\d+)\.bn([1-3])(_skip)?\.{_NORM_ENTRY}", _block(r"conv\3.norm\4.\5")),
        (r"layer([1-4])\.(\d+)\.downsample\.0\.weight", _block("shortcut.weight")),
        (rf"layer([1-4])\.(\d+)\.downsample\.1\.{_NORM_ENTRY}", _block(r"shortcut.norm.\3")),
    ]
)
_TV_SKIP_NORM = re.compile(rf"layer[1-4]\.\d+\.bn[1-3]_skip\.{_NORM_ENTRY}")

# Classifier keys that may sit next to a bare backbone (torchvision "fc", Caffe2 "fc1000",
# pycls "head.fc"); they have no place in a detector.
_CLASSIFIER = re.compile(r"^(fc|fc1000|linear|head\.fc)\.(weight|bias)$")
# A Detectron2 ResNet key, possibly under a prefix ("backbone.bottom_up.res2.0.conv1.weight").
_D2_RESNET_KEY = re.compile(r"(?:^|\.)(stem\.|res(\d+)\.(\d+)\.)")


def detect_layout(keys: Iterable[str]) -> Optional[str]:
    """From the keys, never from the file extension: ``"adn"`` (torchvision's names plus
    ``layer<s>.<i>.bn<k>_skip`` in mandatory blocks: the official ADN ResNets),
    ``"torchvision"`` (the same without skip norms), ``"detectron2-backbone"`` (a bare
    Detectron2 ResNet: ``stem.*``, ``res<k>.<i>.*``) or None (anything else)."""
    keys = list(keys)
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return ADN if any(_TV_SKIP_NORM.fullmatch(k) for k in keys) else TORCHVISION
    backbone = [k for k in keys if not _CLASSIFIER.match(k)]
    if backbone and any(k.startswith("stem.") for k in backbone):
        if all(k.startswith("stem.") or re.match(r"^res\d+\.\d+\.", k) for k in backbone):
            return DETECTRON2_BACKBONE
    return None


def is_skip_norm_key(key: str) -> bool:
    """A skip norm's tensor ("res2.0.conv1.norm_skip.weight") or module name."""
    return ".norm_skip." in key or key.endswith(".norm_skip")


class ResNetStructure(NamedTuple):
    blocks_per_stage: Tuple[int, ...]  # res2, res3, ...
    bottleneck: bool

    @property
    def depth(self) -> Optional[int]:
        table = _BOTTLENECK_DEPTHS if self.bottleneck else _BASIC_DEPTHS
        return table.get(self.blocks_per_stage)

    def __str__(self) -> str:
        kind = "bottleneck" if self.bottleneck else "basic"
        name = f"ResNet-{self.depth}" if self.depth else "a ResNet"
        return f"{name} ({kind} blocks per stage {list(self.blocks_per_stage)})"


_BOTTLENECK_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
_BASIC_DEPTHS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34}


def _blocks_by_stage(keys: Iterable[str]) -> Dict[int, set]:
    blocks: Dict[int, set] = {}
    for key in keys:
        m = _D2_RESNET_KEY.search(key)
        if m and m.group(2) is not None:
            blocks.setdefault(int(m.group(2)), set()).add(int(m.group(3)))
    return blocks


def is_resnet_key(key: str) -> bool:
    """A Detectron2 ResNet key (``stem.*``, ``res<k>.<i>.*``), possibly under a prefix."""
    return bool(_D2_RESNET_KEY.search(key))


def resnet_structure(keys: Iterable[str]) -> Optional[ResNetStructure]:
    """The ResNet that Detectron2-named keys describe (prefixes allowed), or None."""
    keys = list(keys)
    blocks = _blocks_by_stage(keys)
    if not blocks:
        return None
    counts = tuple(len(blocks[s]) for s in sorted(blocks))
    bottleneck = any(".conv3." in k for k in keys if _D2_RESNET_KEY.search(k))
    return ResNetStructure(counts, bottleneck)


def mandatory_blocks_from_keys(keys: Iterable[str], num_stages: int = 4) -> List[int]:
    """Blocks with skip norms per stage (res2, res3, ...), read from Detectron2 names: the
    mandatory blocks of the ADN model the keys were saved from."""
    blocks = _blocks_by_stage(k for k in keys if is_skip_norm_key(k))
    return [len(blocks.get(stage, ())) for stage in range(2, 2 + num_stages)]


def convert_torchvision_checkpoint(state_dict: Mapping, source: str) -> dict:
    """The checkpoint dict Detectron2 loads an official-ADN or torchvision ResNet state dict
    from: Detectron2 names and ``matching_heuristics: True``, so that Detectron2 finds
    where the backbone sits in the model (``backbone.bottom_up.`` for FPN, ``backbone.``
    for C4, ``roi_heads.res5`` for C4 heads) exactly as for its own converted torchvision
    weights, rather than adadet guessing the model's prefixes.

    Raises CheckpointFormatError naming ``source`` and the keys of neither layout: dropping
    them silently could leave part of the backbone unloaded.
    """
    converted, dropped, unknown = rename_keys(state_dict, _TORCHVISION_RULES)
    if unknown:
        rename = ", or rename the extra keys to Detectron2 names yourself"
        raise unknown_keys_error(source, unknown, "ResNet", "ADN ResNet", rename)
    skip_norms = {k.rsplit(".", 1)[0] for k in converted if is_skip_norm_key(k)}
    return {
        "model": converted,
        "__author__": "official ADN" if detect_layout(state_dict) == ADN else "torchvision",
        "matching_heuristics": True,
        "torchvision_style": True,
        "num_skip_norms": len(skip_norms),
        "dropped_keys": dropped,
    }


# -- the config torchvision-style weights need -----------------------------------------------
# Those ResNets put the stride of a bottleneck in its 3x3 conv and were trained on RGB images
# normalised with ImageNet's mean/std; Detectron2's defaults follow the MSRA weights instead
# (stride in the 1x1 conv, BGR, mean only).

#: Config keys and the values torchvision-style weights need.
TORCHVISION_WEIGHTS_CONFIG = {
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
    "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
}


def _same(actual, expected) -> bool:
    if isinstance(expected, list):
        return len(actual) == len(expected) and np.allclose(actual, expected, rtol=0, atol=1e-3)
    return actual == expected


def torchvision_config_mismatches(cfg) -> List[str]:
    """One line per config key that differs from :data:`TORCHVISION_WEIGHTS_CONFIG`."""
    problems = []
    for key, expected in TORCHVISION_WEIGHTS_CONFIG.items():
        actual = functools.reduce(getattr, key.split("."), cfg)
        if not _same(actual, expected):
            problems.append(f"{key} is {actual!r}, the weights need {expected!r}")
    return problems


def torchvision_config_yaml(
    weights: Optional[str] = None,
    depth: Optional[int] = None,
    basic_blocks: bool = False,
    num_mandatory_blocks: Optional[Sequence[int]] = None,
) -> str:
    """The config snippet torchvision-style weights need (printed by the converter)."""
    lines = ["MODEL:"]
    if weights:
        lines.append(f'  WEIGHTS: "{weights}"')
    lines += [
        "  PIXEL_MEAN: [123.675, 116.280, 103.530]",
        "  PIXEL_STD: [58.395, 57.120, 57.375]",
        "  RESNETS:",
    ]
    if depth:
        lines.append(f"    DEPTH: {depth}")
    if basic_blocks:  # Detectron2's ResNet-18/34 need it; its default (256) is for bottlenecks
        lines.append("    RES2_OUT_CHANNELS: 64")
    lines.append("    STRIDE_IN_1X1: False")
    if num_mandatory_blocks:
        lines += ["  ADN:", f"    NUM_MANDATORY_BLOCKS: {list(num_mandatory_blocks)}"]
    lines += ["INPUT:", '  FORMAT: "RGB"']
    return "\n".join(lines) + "\n"


def check_config_for_torchvision_weights(cfg, weights: Optional[str] = None) -> None:
    """Raise :class:`WeightsConfigError` listing every key of ``cfg`` that torchvision-style
    weights (``weights``, by default ``MODEL.WEIGHTS``) would be used wrongly with: a wrong
    stride position or channel order does not fail, it just gives poor results."""
    problems = torchvision_config_mismatches(cfg)
    if problems:
        raise WeightsConfigError(
            f"'{weights or cfg.MODEL.WEIGHTS}' holds torchvision-style ResNet weights "
            "(official ADN or torchvision: stride in the 3x3 conv, RGB input, ImageNet "
            "mean/std), but the config does not match them:\n  - "
            + "\n  - ".join(problems)
            + "\nFix: set "
            + ", ".join(f"{k}: {v}" for k, v in TORCHVISION_WEIGHTS_CONFIG.items())
            + "."
        )
