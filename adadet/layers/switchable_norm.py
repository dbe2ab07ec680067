"""Switchable normalization for the mandatory blocks of an adaptive-depth stage.

When a stage skips its skippable sub-path, the layers after it see features with other
statistics than the full stage produces. So every normalized conv of a mandatory block
carries a second norm, ``norm_skip``, used exactly while its stage skips (ADN, Sec. 3).
Weights of the conv itself are shared; only the norm is switched.
"""
import torch.nn as nn
from detectron2.layers import Conv2d, get_norm

from .skip_switch import SkipSwitch


class SwitchableNormConv2d(Conv2d):
    """Detectron2's :class:`Conv2d` (conv -> norm -> activation) with a second norm,
    ``norm_skip``, that replaces ``norm`` while ``switch.active``.

    The main norm keeps Detectron2's key (``<conv>.norm``), so ordinary ResNet checkpoints
    load into it unchanged; the extra norm is ``<conv>.norm_skip``.
    """

    def __init__(self, *args, norm_skip: nn.Module, switch: SkipSwitch, **kwargs):
        super().__init__(*args, **kwargs)
        if self.norm is None or norm_skip is None:
            raise ValueError("A switchable-norm conv needs both a main norm and a skip norm.")
        self.norm_skip = norm_skip
        self.switch = switch

    @classmethod
    def from_conv(cls, conv: Conv2d, norm: str, switch: SkipSwitch) -> "SwitchableNormConv2d":
        """The same conv (its weight Parameter and main norm are shared, not copied) plus a
        fresh skip norm of type ``norm`` (any of Detectron2's: BN, SyncBN, FrozenBN, GN...)."""
        switchable = cls(
            conv.in_channels,
            conv.out_channels,
            kernel_size=conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            norm=conv.norm,
            activation=conv.activation,
            norm_skip=get_norm(norm, conv.out_channels),
            switch=switch,
        )
        switchable.weight = conv.weight
        switchable.bias = conv.bias
        return switchable

    def forward(self, x):
        if not self.switch.active:
            return super().forward(x)
        x = self._conv_forward(x, self.weight, self.bias)
        x = self.norm_skip(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self) -> str:
        return super().extra_repr() + ", switchable norm"
