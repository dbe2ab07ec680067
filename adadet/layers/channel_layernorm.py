"""A LayerNorm over the channels of an ``(N, C, H, W)`` map, for the convs of ViT-ADN's
simple feature pyramid and of the "LN" ROI heads (Detectron2 v0.6's ``get_norm`` has no
"LN"; main's ``detectron2.layers.LayerNorm`` is the same computation, same parameter
names)."""
import torch
import torch.nn as nn

__all__ = ["ChannelLayerNorm", "ln_as_channel_layernorm"]


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


def ln_as_channel_layernorm(norm):
    """A norm for Detectron2's ``get_norm`` (and the ``conv_norm`` of its heads) that works on
    every Detectron2 version: ``"LN"`` -> :class:`ChannelLayerNorm` (a callable, which
    ``get_norm`` accepts instead of a name); anything else (``""``, ``"GN"``, ``"BN"``, a
    callable...) unchanged."""
    return ChannelLayerNorm if norm == "LN" else norm
