from .channel_layernorm import ChannelLayerNorm, ln_as_channel_layernorm
from .skippable_refinement import SkippableRefinement, zero_init_refinement
from .switchable_layernorm import SwitchableLayerNorm
from .skip_switch import SkipSwitch, depth_scope
from .switchable_norm import SwitchableNormConv2d

__all__ = [
    "ChannelLayerNorm",
    "SkipSwitch",
    "SkippableRefinement",
    "SwitchableLayerNorm",
    "SwitchableNormConv2d",
    "depth_scope",
    "ln_as_channel_layernorm",
    "zero_init_refinement",
]
