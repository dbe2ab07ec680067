"""Renaming state-dict keys by a table of rules: one implementation for the ResNet and ViT
converters, whose tables (:mod:`.resnet_keys`, :mod:`.vit_keys`) are the mapping itself."""

import re
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import CheckpointFormatError, first_few

#: A rule: a regex the whole key must match, and its new name: a ``match.expand`` template
#: (a group that did not match expands to ""), a function of the match, or None (dropped).
Rule = Tuple[re.Pattern, Union[str, Callable[[re.Match], str], None]]


def compile_rules(rules: Sequence[Tuple[str, object]]) -> List[Rule]:
    return [(re.compile(pattern), new) for pattern, new in rules]


def rename_key(key: str, rules: Sequence[Rule]) -> Optional[str]:
    """The new name of ``key``, None for a dropped key; KeyError when no rule matches."""
    for pattern, new in rules:
        m = pattern.fullmatch(key)
        if m:
            if callable(new):
                return new(m)
            return None if new is None else m.expand(new)
    raise KeyError(key)


def rename_keys(state_dict: Mapping, rules: Sequence[Rule]) -> Tuple[Dict, List[str], List[str]]:
    """(renamed state dict, dropped keys, keys no rule matches)."""
    renamed, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        try:
            name = rename_key(key, rules)
        except KeyError:
            unknown.append(key)
            continue
        if name is None:
            dropped.append(key)
        else:
            renamed[name] = value
    return renamed, dropped, unknown


def unknown_keys_error(source: str, unknown: List[str], network: str, official: str, fix=""):
    """Keys of a checkpoint that no rule of ``network`` (e.g. "ResNet") knows; ``fix``: one
    more way out, after the first."""
    return CheckpointFormatError(
        f"Checkpoint '{source}' looks like a torchvision-layout {network} but {len(unknown)} of "
        f"its keys fit neither torchvision's {network} nor the official {official}: "
        f"{first_few(unknown)}. Loading the rest would leave part of the backbone untrained. "
        f"Fix: use an unmodified torchvision or official {official} checkpoint{fix}."
    )
