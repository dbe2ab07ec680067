"""LayerNorms for ViT-ADN and its feature pyramid.

* :class:`SwitchableLayerNorm`: the LayerNorm pair of a mandatory ViT block. Like
  :class:`~adadet.layers.SwitchableNormConv2d` for ResNets, the main norm is ``norm`` and the
  second one, used exactly while the block's group skips its skippable block, is
  ``norm_skip``: the blocks after a skipped one see features with other statistics (ADN,
  Sec. 3). Both names are the ones adadet's checkpointer looks for when it initialises
  missing skip norms from the main ones.
* :class:`ChannelLayerNorm`: a LayerNorm over the channels of an ``(N, C, H, W)`` map, for
  the convs of the simple feature pyramid (Detectron2 v0.6's ``get_norm`` has no "LN").
"""
import torch
import torch.nn as nn

from .switchable_norm import SkipSwitch

__all__ = ["SwitchableLayerNorm", "ChannelLayerNorm"]


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


class ChannelLayerNorm(nn.Module):
    """LayerNorm over dimension 1 of an ``(N, C, H, W)`` tensor (each pixel normalised over
    its channels), with a per-channel weight and bias."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"
