"""Training ADN detectors: the self-distillation step, the optimizer and the Detectron2
trainer."""
from ..modeling.self_distillation import SelfDistillationModel, unwrap_detector
from .optimizer import adn_optimizer_param_groups, build_adn_optimizer
from .train_step import ADNAMPTrainStep, ADNTrainStep, write_loss_metrics
from .trainer import ADNTrainer, check_datasets_available, ddp_kwargs

__all__ = [
    "ADNTrainer",
    "ADNTrainStep",
    "ADNAMPTrainStep",
    "SelfDistillationModel",
    "adn_optimizer_param_groups",
    "build_adn_optimizer",
    "check_datasets_available",
    "ddp_kwargs",
    "unwrap_detector",
    "write_loss_metrics",
]
