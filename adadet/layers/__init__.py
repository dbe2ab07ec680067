from .channel_layernorm import ChannelLayerNorm, ln_as_channel_layernorm
from .switchable_layernorm import SwitchableLayerNorm
from .switchable_norm import SkipSwitch, SwitchableNormConv2d

__all__ = [
    "ChannelLayerNorm",
    "SkipSwitch",
    "SwitchableLayerNorm",
    "SwitchableNormConv2d",
    "ln_as_channel_layernorm",
]
