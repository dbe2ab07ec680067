from .channel_layernorm import ChannelLayerNorm
from .switchable_layernorm import SwitchableLayerNorm
from .switchable_norm import SkipSwitch, SwitchableNormConv2d

__all__ = [
    "ChannelLayerNorm",
    "SkipSwitch",
    "SwitchableLayerNorm",
    "SwitchableNormConv2d",
]
