from .depth_bn_statistics import (
    calibrate_depth_bn_statistics,
    calibrated_depths,
    discard_depth_bn_statistics,
    prepare_depth_bn_buffers,
)
from .channel_layernorm import ChannelLayerNorm
from .switchable_layernorm import SwitchableLayerNorm
from .switchable_norm import SkipSwitch, SwitchableNormConv2d

__all__ = [
    "ChannelLayerNorm",
    "SkipSwitch",
    "SwitchableLayerNorm",
    "SwitchableNormConv2d",
    "calibrate_depth_bn_statistics",
    "calibrated_depths",
    "discard_depth_bn_statistics",
    "prepare_depth_bn_buffers",
]
