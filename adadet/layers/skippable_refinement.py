"""A skippable refinement: ``x + branch(x)`` (then an optional activation), or ``x``.

The neck and heads of a detector adapt in ADN's pattern: a sub-path whose output is added
to its input can be skipped, leaving the identity, so that a part's cheaper setting is its
own input, refined less. The branch starts at zero (:func:`zero_init_refinement`): at
initialisation running it changes nothing, so it learns only a correction of what the
skipping setting computes, as ADN's skippable blocks refine their stage's features.
"""
from typing import Callable, Optional

import torch
import torch.nn as nn

from .skip_switch import SkipSwitch

__all__ = ["SkippableRefinement", "zero_init_refinement"]

_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._NormBase)


class SkippableRefinement(nn.Module):
    """``activation(x + branch(x))`` (no activation when None); ``x`` itself while
    ``skips`` is True, without calling ``branch``."""

    def __init__(self, branch: nn.Module, activation: Optional[Callable] = None):
        super().__init__()
        self.branch = branch
        self.activation = activation
        self.switch = SkipSwitch()

    @property
    def skips(self) -> bool:
        return self.switch.active

    @skips.setter
    def skips(self, value: bool) -> None:
        self.switch.active = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skips:
            return x
        out = x + self.branch(x)
        return self.activation(out) if self.activation is not None else out

    def extra_repr(self) -> str:
        return f"skips={self.skips}"


def zero_init_refinement(refinement: SkippableRefinement) -> None:
    """Make the branch's output zero: the weights of the norms after its last conv when it
    has any (zero-gamma: the conv's gradient stays well scaled), else the weight and bias
    of its last conv."""
    modules = list(refinement.branch.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(refinement.branch).__name__} has no conv to zero.")
    last = modules[convs[-1]]
    norms = [m for m in modules[convs[-1] + 1 :] if isinstance(m, _NORMS) and m.weight is not None]
    for norm in norms:  # several for a per-level norm list (RetinaNet's CycleBatchNormList)
        nn.init.zeros_(norm.weight)
    if not norms:
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
