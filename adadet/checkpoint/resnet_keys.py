"""Key layouts of ResNet weights, and their conversion to Detectron2's names.

Layouts recognised from the keys (never from the file extension alone):

* ``"adn"``: the official ImageNet ADN ResNets. torchvision's names (``conv1``, ``bn1``,
  ``layer{1-4}.{i}.conv{k}`` / ``bn{k}``, ``downsample.{0,1}``, ``fc``) plus a second norm
  ``layer{1-4}.{i}.bn{k}_skip`` in each mandatory block.
* ``"torchvision"``: the same without ``_skip`` norms (an ordinary torchvision ResNet).
* ``"detectron2-backbone"``: a bare Detectron2 ResNet (``stem.conv1``, ``res2.0.conv1.norm``...).

Anything else (a full Detectron2/adadet model, Caffe2/MSRA pickles, which Detectron2 itself
renames) is left to Detectron2.
"""

import re
from collections.abc import Mapping
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple

from .renaming import compile_rules, rename_key, rename_keys, unknown_keys_error

__all__ = [
    "ADN",
    "TORCHVISION",
    "DETECTRON2_BACKBONE",
    "detect_layout",
    "torchvision_to_detectron2_name",
    "convert_torchvision_state_dict",
    "convert_torchvision_checkpoint",
    "TorchvisionConversion",
    "ResNetStructure",
    "resnet_structure",
    "is_resnet_key",
    "mandatory_blocks_from_keys",
    "is_skip_norm_key",
]

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
    """``"adn"``, ``"torchvision"``, ``"detectron2-backbone"`` or None (anything else)."""
    keys = list(keys)
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return ADN if any(_TV_SKIP_NORM.fullmatch(k) for k in keys) else TORCHVISION
    backbone = [k for k in keys if not _CLASSIFIER.match(k)]
    if backbone and any(k.startswith("stem.") for k in backbone):
        if all(k.startswith("stem.") or re.match(r"^res\d+\.\d+\.", k) for k in backbone):
            return DETECTRON2_BACKBONE
    return None


def torchvision_to_detectron2_name(key: str) -> Optional[str]:
    """Detectron2's name of a torchvision / official-ADN ResNet key; None for the
    classifier (dropped); raises KeyError for a key of neither layout."""
    return rename_key(key, _TORCHVISION_RULES)


class TorchvisionConversion(NamedTuple):
    state_dict: Dict[str, object]  # Detectron2 names -> tensors
    dropped: List[str]  # classifier keys, not needed by a detector
    skip_norms: List[str]  # Detectron2 names of the skip norms found, e.g. "res2.0.conv1.norm_skip"


def convert_torchvision_state_dict(state_dict: Mapping) -> TorchvisionConversion:
    """Rename an official-ADN or torchvision ResNet state dict to Detectron2's names.

    Raises KeyError listing every key of neither layout: dropping them silently could leave
    part of the backbone unloaded.
    """
    converted, dropped, unknown = rename_keys(state_dict, _TORCHVISION_RULES)
    if unknown:
        raise KeyError(unknown)
    skip_norms = sorted({k.rsplit(".", 1)[0] for k in converted if is_skip_norm_key(k)})
    return TorchvisionConversion(converted, dropped, skip_norms)


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

    Raises CheckpointFormatError naming ``source`` and the keys of neither layout.
    """
    layout = detect_layout(state_dict)
    try:
        conversion = convert_torchvision_state_dict(state_dict)
    except KeyError as e:
        rename = ", or rename the extra keys to Detectron2 names yourself"
        raise unknown_keys_error(source, e.args[0], "ResNet", "ADN ResNet", rename) from None
    return {
        "model": conversion.state_dict,
        "__author__": "official ADN" if layout == ADN else "torchvision",
        "matching_heuristics": True,
        "torchvision_style": True,
        "num_skip_norms": len(conversion.skip_norms),
        "dropped_keys": conversion.dropped,
    }
