"""The LayerNorm pair of a mandatory ViT-ADN block.

Like :class:`~adadet.layers.SwitchableNormConv2d` for ResNets, the main norm is ``norm`` and
the second one, used exactly while the block's group skips its skippable block, is
``norm_skip``: the blocks after a skipped one see features with other statistics (ADN,
Sec. 3). Both names are the ones adadet's checkpointer looks for when it initialises missing
skip norms from the main ones.
"""
import torch
import torch.nn as nn

from .switchable_norm import SkipSwitch

__all__ = ["SwitchableLayerNorm"]


class SwitchableLayerNorm(nn.Module):
    """Two LayerNorms of the same shape: ``norm`` normally, ``norm_skip`` while
    ``switch.active``. Holds no parameters of its own, so only the norm in use takes part
    in a forward pass (and gets a gradient)."""

    def __init__(self, normalized_shape, switch: SkipSwitch, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(normalized_shape, eps=eps)
        self.norm_skip = nn.LayerNorm(normalized_shape, eps=eps)
        self.switch = switch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_skip(x) if self.switch.active else self.norm(x)

    def extra_repr(self) -> str:
        return f"switch={self.switch}"
