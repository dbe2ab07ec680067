"""Training ADN detectors: the self-distillation step, the optimizer and the Detectron2
trainer."""
from ..modeling.self_distillation import SelfDistillationModel, unwrap_detector
from .optimizer import adn_optimizer_param_groups, build_adn_optimizer
from .train_step import ADNAMPTrainStep, ADNTrainStep, stop_if_not_finite
from .ddp import ddp_kwargs
from .trainer import ADNTrainer

__all__ = [
    "ADNTrainer",
    "ADNTrainStep",
    "ADNAMPTrainStep",
    "SelfDistillationModel",
    "adn_optimizer_param_groups",
    "build_adn_optimizer",
    "ddp_kwargs",
    "unwrap_detector",
    "stop_if_not_finite",
]
