"""Weight loading for adadet models: :class:`ADNCheckpointer` loads official ADN,
torchvision, Detectron2/MSRA and adadet checkpoints through ``MODEL.WEIGHTS``."""

from .adn_checkpointer import ADNCheckpointer
from .errors import (
    SKIP_NORM_INIT_POLICIES,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    CheckpointReadError,
    SkipNormsMissingError,
    WeightsConfigError,
)
from .resnet_keys import (
    TORCHVISION_WEIGHTS_CONFIG,
    check_config_for_torchvision_weights,
    torchvision_config_mismatches,
)

__all__ = [
    "ADNCheckpointer",
    "SKIP_NORM_INIT_POLICIES",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointWriteError",
    "CheckpointReadError",
    "SkipNormsMissingError",
    "WeightsConfigError",
    "TORCHVISION_WEIGHTS_CONFIG",
    "check_config_for_torchvision_weights",
    "torchvision_config_mismatches",
]
