"""Renaming a state dict's keys by a table of rules, shared by the ResNet (:mod:`.resnet_keys`)
and ViT (:mod:`.vit_keys`) conversions, and the arrays a converter writes. It knows no
layout: each converter brings its rules."""

import re
from collections.abc import Mapping
from typing import Callable, Dict, List, Sequence, Tuple, Union

import torch

#: A rule: a regex the whole key must match, and its new name: a ``match.expand`` template
#: (a group that did not match expands to ""), a function of the match, or None (dropped).
Rule = Tuple[re.Pattern, Union[str, Callable[[re.Match], str], None]]


def compile_rules(rules: Sequence[Tuple[str, object]]) -> List[Rule]:
    return [(re.compile(pattern), new) for pattern, new in rules]


def rename_keys(state_dict: Mapping, rules: Sequence[Rule]) -> Tuple[Dict, List[str], List[str]]:
    """(renamed state dict, dropped keys, keys no rule matches)."""
    renamed, dropped, unknown = {}, [], []
    for key, value in state_dict.items():
        for pattern, new in rules:
            m = pattern.fullmatch(key)
            if m:
                break
        else:
            unknown.append(key)
            continue
        if new is None:
            dropped.append(key)
        else:
            renamed[new(m) if callable(new) else m.expand(new)] = value
    return renamed, dropped, unknown


def numpy_state_dict(state_dict: Mapping) -> Dict[str, object]:
    """The arrays a converter's ``.pkl`` holds (half precision as float32, as Detectron2
    loads it)."""
    out = {}
    for key, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float16):
            tensor = tensor.float()
        out[key] = tensor.numpy()
    return out
