from .channel_layernorm import ChannelLayerNorm, ln_as_channel_layernorm
from .skippable_refinement import SkippableRefinement, zero_init_refinement
from .switchable_layernorm import SwitchableLayerNorm
from .switchable_norm import SkipSwitch, SwitchableNormConv2d

__all__ = [
    "ChannelLayerNorm",
    "SkipSwitch",
    "SkippableRefinement",
    "SwitchableLayerNorm",
    "SwitchableNormConv2d",
    "ln_as_channel_layernorm",
    "zero_init_refinement",
]
