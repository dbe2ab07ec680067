"""Calibration of a trained model, weights unchanged: per-depth BatchNorm statistics
(:mod:`.depth_bn_statistics`), re-estimated before evaluation and kept by checkpoints."""
from .depth_bn_statistics import (
    calibrate_depth_bn_statistics,
    calibrated_depths,
    discard_depth_bn_statistics,
    prepare_depth_bn_buffers,
    refresh_depth_bn_statistics,
)

__all__ = [
    "calibrate_depth_bn_statistics",
    "calibrated_depths",
    "discard_depth_bn_statistics",
    "prepare_depth_bn_buffers",
    "refresh_depth_bn_statistics",
]
