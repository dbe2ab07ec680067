"""Training ADN detectors: the self-distillation step, the optimizer and the Detectron2
trainer."""
from .distill_step import (
    ADNAMPTrainStep,
    ADNTrainStep,
    SelfDistillationModel,
    capture_backbone_features,
    unwrap_detector,
    write_loss_metrics,
)
from .optimizer import adn_optimizer_param_groups, build_adn_optimizer
from .trainer import ADNTrainer, check_datasets_available, ddp_kwargs

__all__ = [
    "ADNTrainer",
    "ADNTrainStep",
    "ADNAMPTrainStep",
    "SelfDistillationModel",
    "adn_optimizer_param_groups",
    "build_adn_optimizer",
    "capture_backbone_features",
    "check_datasets_available",
    "ddp_kwargs",
    "unwrap_detector",
    "write_loss_metrics",
]
