"""ChannelLayerNorm: a LayerNorm over the channels of an (N, C, H, W) map."""
import torch

from adadet.layers import ChannelLayerNorm


def test_channel_layernorm_normalises_over_channels():
    norm = ChannelLayerNorm(6)
    x = torch.randn(2, 6, 3, 4) * 5 + 3
    y = norm(x)
    channels_last = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), eps=1e-6)
    reference = channels_last.permute(0, 3, 1, 2)
    torch.testing.assert_close(y, reference, rtol=1e-4, atol=1e-5)
