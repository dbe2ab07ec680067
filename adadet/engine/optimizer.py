"""``build_adn_optimizer``: Detectron2's ``build_optimizer``, plus ViT-ADN's layer-wise LR
decay (``MODEL.VIT_ADN.LR_DECAY_RATE``) and AdamW (``SOLVER.OPTIMIZER``).

Detectron2's yacs ``build_optimizer`` has neither (v0.6's ``get_default_optimizer_params``
has no per-parameter LR factor; main's ``lr_factor_func`` is reached only from lazy
configs). Here the parameter groups are Detectron2's own (``get_default_optimizer_params``
with ``SOLVER.BASE_LR``, ``WEIGHT_DECAY_NORM``, ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS``),
each parameter's ``lr`` multiplied by its layer-wise factor
(:func:`~adadet.modeling.backbone.vit_adn.vit_layerwise_lr_decay`), and gradient clipping is
Detectron2's ``maybe_add_gradient_clipping``. Detectron2's LR schedulers (``LRMultiplier``)
scale each group's initial ``lr``, so the per-block ratios hold through warm-up and decay.
"""
import logging
from typing import Any, Dict, List

import torch
from detectron2.config import CfgNode
from detectron2.solver import build_optimizer, get_default_optimizer_params
from detectron2.solver.build import maybe_add_gradient_clipping, reduce_param_groups

from ..modeling.backbone.vit_adn import ViTADN, vit_layerwise_lr_decay

__all__ = [
    "OPTIMIZERS",
    "adn_optimizer_param_groups",
    "build_adn_optimizer",
    "check_lr_decay_rate",
    "clipped_optimizer",
    "vit_adn_param_groups",
]

logger = logging.getLogger(__name__)

#: ``SOLVER.OPTIMIZER`` values. AdamW takes ``SOLVER.BASE_LR`` and ``WEIGHT_DECAY`` and
#: torch's default betas (0.9, 0.999), as ViTDet; ``MOMENTUM`` / ``NESTEROV`` are SGD's.
OPTIMIZERS = {"SGD": torch.optim.SGD, "ADAMW": torch.optim.AdamW}


def check_lr_decay_rate(rate, name: str = "The layer-wise LR decay rate") -> float:
    """``rate`` as a float, if it is in (0, 1]; else a ValueError that names it ``name``
    (the config key it came from)."""
    rate = float(rate)
    if not 0.0 < rate <= 1.0:
        raise ValueError(
            f"{name} is {rate}: it must be in (0, 1] (1.0 = no layer-wise decay; ViTDet uses "
            "0.7 for ViT-B, 0.8 for ViT-L)."
        )
    return rate


def _lr_decay_rate(cfg) -> float:
    vit_cfg = cfg.MODEL.get("VIT_ADN")
    if vit_cfg is None:
        return 1.0
    return check_lr_decay_rate(vit_cfg.LR_DECAY_RATE, "MODEL.VIT_ADN.LR_DECAY_RATE")


def _optimizer_name(cfg) -> str:
    name = str(cfg.SOLVER.get("OPTIMIZER", "SGD")).upper()
    if name not in OPTIMIZERS:
        raise ValueError(
            f"SOLVER.OPTIMIZER is {cfg.SOLVER.OPTIMIZER!r}: use one of {sorted(OPTIMIZERS)}."
        )
    return name


def adn_optimizer_param_groups(cfg, model: torch.nn.Module) -> List[Dict[str, Any]]:
    """Detectron2's parameter groups for ``model`` from the ``SOLVER`` keys, with every
    ViT-ADN parameter's ``lr`` multiplied by its layer-wise factor: block i of L
    ``LR_DECAY_RATE^(L - i)``, patch and position embeddings ``LR_DECAY_RATE^(L + 1)``,
    everything else (final norm, pyramid, heads) 1. At rate 1.0 these are exactly
    Detectron2's groups."""
    return vit_adn_param_groups(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        lr_decay_rate=_lr_decay_rate(cfg),
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )


def vit_adn_param_groups(
    model: torch.nn.Module,
    *,
    base_lr: float,
    lr_decay_rate: float = 1.0,
    weight_decay_norm: float = 0.0,
    bias_lr_factor: float = 1.0,
    weight_decay_bias=None,
) -> List[Dict[str, Any]]:
    """:func:`adn_optimizer_param_groups` with explicit arguments: the ``params`` of a lazy
    config's optimizer (``L(vit_adn_param_groups)(base_lr=..., lr_decay_rate=0.7)``, with
    ``model`` set by the entry point)."""
    groups = get_default_optimizer_params(
        model,
        base_lr=base_lr,
        weight_decay_norm=weight_decay_norm,
        bias_lr_factor=bias_lr_factor,
        weight_decay_bias=weight_decay_bias,
    )
    rate = check_lr_decay_rate(lr_decay_rate)
    if rate == 1.0:
        return groups
    by_name = vit_layerwise_lr_decay(model, rate)
    factor = {id(param): by_name[name] for name, param in model.named_parameters()}
    per_param = [
        {**group, "params": [param], "lr": group["lr"] * factor[id(param)]}
        for group in groups
        for param in group["params"]
    ]
    return reduce_param_groups(per_param)


def build_adn_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer of ``ADNTrainer``.

    With ``SOLVER.OPTIMIZER: "SGD"`` (the default) and no layer-wise decay in effect (rate
    1.0, or no :class:`ViTADN` in ``model``), exactly ``detectron2.solver.build_optimizer``.
    Otherwise SGD (``MOMENTUM``, ``NESTEROV``) or AdamW over
    :func:`adn_optimizer_param_groups`, at ``BASE_LR`` and ``WEIGHT_DECAY``, with
    ``SOLVER.CLIP_GRADIENTS``.

    Raises:
        ValueError: ``MODEL.VIT_ADN.LR_DECAY_RATE`` outside (0, 1], or an unknown
            ``SOLVER.OPTIMIZER``.
    """
    rate = _lr_decay_rate(cfg)
    name = _optimizer_name(cfg)
    vits = [m for m in model.modules() if isinstance(m, ViTADN)]
    if rate < 1.0 and not vits:
        logger.warning(
            f"MODEL.VIT_ADN.LR_DECAY_RATE {rate} has no effect: the model has no ViT-ADN."
        )
    if name == "SGD" and (rate == 1.0 or not vits):
        return build_optimizer(cfg, model)
    if rate < 1.0:
        num_blocks = vits[0].num_blocks
        logger.info(
            f"Layer-wise LR decay {rate} over {num_blocks} ViT-ADN blocks: block i trains at "
            f"BASE_LR x {rate}^({num_blocks} - i), the embeddings at x "
            f"{rate ** (num_blocks + 1):.3g}, the rest at BASE_LR."
        )
    kwargs = dict(lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    if name == "SGD":
        kwargs.update(momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV)
    optimizer_type = maybe_add_gradient_clipping(cfg, OPTIMIZERS[name])
    return optimizer_type(adn_optimizer_param_groups(cfg, model), **kwargs)


def clipped_optimizer(
    optimizer_class,
    *,
    clip_type: str,
    clip_value: float,
    norm_type: float = 2.0,
    **optimizer_kwargs,
) -> torch.optim.Optimizer:
    """``optimizer_class(**optimizer_kwargs)`` whose ``step`` first clips the gradients as
    Detectron2's ``SOLVER.CLIP_GRADIENTS`` does (``clip_type`` "value" or "norm"), for
    lazy configs, which have no such key::

        optimizer = L(clipped_optimizer)(optimizer_class=torch.optim.SGD, params=...,
                                         lr=0.01, clip_type="norm", clip_value=5.0)
    """
    if clip_type not in ("value", "norm"):
        raise ValueError(f"clip_type is {clip_type!r}: use 'value' or 'norm' (as Detectron2).")
    clipping = CfgNode(
        {"SOLVER": {"CLIP_GRADIENTS": {"ENABLED": True, "CLIP_TYPE": clip_type,
                                       "CLIP_VALUE": float(clip_value),
                                       "NORM_TYPE": float(norm_type)}}}
    )
    return maybe_add_gradient_clipping(clipping, optimizer_class)(**optimizer_kwargs)
