"""Self-distillation losses of ADN training: the sub-net learns to match the super-net.

``feature_kd_loss`` compares feature maps (the bottom-up stage outputs and/or the FPN
levels), per position or globally pooled; ``logits_kd_loss`` compares
classification logits of the same boxes, ``dense_logits_kd_loss`` the per-level
sigmoid logits of a dense head (RPN objectness, RetinaNet classes). The teacher side is
always detached: the super-net is trained by its own task loss only, never pulled
towards the student.
"""
from typing import List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "POOLINGS",
    "REDUCTIONS",
    "channel_kl_divergence",
    "check_kd_options",
    "dense_logits_kd_loss",
    "feature_kd_loss",
    "logits_kd_loss",
]


POOLINGS = ("none", "global")
REDUCTIONS = ("mean", "batchmean")


def check_kd_options(
    *, temperature: Optional[float] = None, pooling: Optional[str] = None,
    reduction: Optional[str] = None,
) -> None:
    """Refuse a value these losses cannot use (those given), naming its config key."""
    if temperature is not None and not temperature > 0:  # also refuses NaN
        raise ValueError(
            f"MODEL.ADN.DISTILL.TEMPERATURE must be a float > 0 (temperature: that of the "
            f"distillation softmaxes), got {temperature}. Fix: e.g. "
            "MODEL.ADN.DISTILL.TEMPERATURE 1.0 (the authors' value)."
        )
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(
            f"MODEL.ADN.DISTILL.POOLING (pooling) must be one of {POOLINGS}, got {pooling!r}."
        )
    if reduction is not None and reduction not in REDUCTIONS:
        raise ValueError(
            f"MODEL.ADN.DISTILL.REDUCTION (reduction) must be one of {REDUCTIONS}, got "
            f"{reduction!r}."
        )


def channel_kl_divergence(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    pooling: str = "none",
    reduction: str = "mean",
) -> torch.Tensor:
    """KL(teacher || student) between channel-softmax distributions of two feature maps.

    Args:
        student, teacher: feature maps of the same shape (N, C, H, W).
        temperature: T; both maps are divided by T before the softmax over C.
        pooling: ``"none"``: one distribution per position (N*H*W of them);
            ``"global"``: one per image, of the globally average-pooled map (N, C) (the
            authors' ImageNet distillation of stage outputs).
        reduction: ``"mean"``: the mean over the distributions; ``"batchmean"``: their
            sum divided by N, i.e. summed over the positions of each image and averaged
            over images (``torch.nn.KLDivLoss(reduction="batchmean")``, the authors'). With
            ``pooling="global"`` the two are the same.

    Returns:
        that KL divergence times T^2 (so the gradient magnitude does not shrink as T
        grows, as in Hinton et al.'s distillation). The teacher is detached.
    """
    check_kd_options(pooling=pooling, reduction=reduction)
    if student.dim() != 4 or student.shape != teacher.shape:
        raise ValueError(
            f"Student and teacher features must be (N, C, H, W) maps of the same shape; got "
            f"{tuple(student.shape)} and {tuple(teacher.shape)}: distill the same outputs."
        )
    if pooling == "global":
        student, teacher = student.mean(dim=(2, 3)), teacher.mean(dim=(2, 3))
    kl = _softmax_kl(student, teacher, temperature, dim=1, what="features", reduce=False)
    if reduction == "batchmean":
        return kl.sum() / student.shape[0]
    return kl.mean()


def _softmax_kl(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    dim: int,
    what: str,
    reduce: bool = True,
) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) over ``dim`` times T^2, averaged
    over every other position (``reduce``) or per position; the teacher detached,
    computed in float32 (accurate under mixed precision)."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"Student and teacher {what} differ in shape: {tuple(student.shape)} vs "
            f"{tuple(teacher.shape)}; distill {what} of the same outputs."
        )
    check_kd_options(temperature=temperature)
    log_p_student = F.log_softmax(student.float() / temperature, dim=dim)
    log_p_teacher = F.log_softmax(teacher.detach().float() / temperature, dim=dim)
    kl_per_position = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=dim)
    kl_per_position = kl_per_position * (temperature**2)
    return kl_per_position.mean() if reduce else kl_per_position


def feature_kd_loss(
    student_feats: Mapping[str, torch.Tensor],
    teacher_feats: Mapping[str, torch.Tensor],
    temperature: float = 1.0,
    features: Optional[Sequence[str]] = None,
    pooling: str = "none",
    reduction: str = "mean",
) -> torch.Tensor:
    """Feature distillation loss between two dicts of feature maps (FPN levels, stage
    outputs).

    For each map: :func:`channel_kl_divergence` (KL(teacher || student) between channel
    softmaxes of ``features / T``, per position or of the pooled map, reduced as
    ``reduction`` says, times T^2). The loss is the **mean over maps** (not the sum), so
    that ``KD_WEIGHT`` keeps its meaning whatever the number of maps distilled. It is 0
    for equal features and > 0 otherwise. The teacher is detached.

    Args:
        student_feats, teacher_feats: name -> (N, C, H, W) tensor.
        temperature: softmax temperature T.
        features: the maps to compare; default: every map of ``teacher_feats``.
        pooling, reduction: as for :func:`channel_kl_divergence`.
    """
    names = list(features) if features is not None else list(teacher_feats.keys())
    if not names:
        raise ValueError("No features to distill: give at least one, e.g. ['res4'] or ['p2'].")
    missing = [n for n in names if n not in student_feats or n not in teacher_feats]
    if missing:
        raise KeyError(
            f"Distilled feature(s) {missing} were not captured (student has "
            f"{sorted(student_feats)}, teacher has {sorted(teacher_feats)}); set "
            "MODEL.ADN.DISTILL.FEATURES to backbone outputs or stage outputs of the model."
        )
    losses = [
        channel_kl_divergence(student_feats[n], teacher_feats[n], temperature, pooling, reduction)
        for n in names
    ]
    return torch.stack(losses).mean()


def logits_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    binary: bool = False,
) -> torch.Tensor:
    """KL(teacher || student) between class distributions, for aligned logits.

    ``binary=False``: ``(..., K)`` logits, softmax over the last dimension (ROI class
    scores). ``binary=True``: every element is one sigmoid logit (RPN objectness), i.e.
    the distribution [sigmoid(x), 1 - sigmoid(x)]. Averaged over all positions, times
    T^2; the teacher is detached. The logits must describe the same anchors/boxes in
    both nets (e.g. RPN logits of the same image).
    """
    if binary:
        # softmax([x, 0]) == [sigmoid(x), 1 - sigmoid(x)]
        student_logits = torch.stack([student_logits, torch.zeros_like(student_logits)], dim=-1)
        teacher_logits = torch.stack([teacher_logits, torch.zeros_like(teacher_logits)], dim=-1)
    return _softmax_kl(student_logits, teacher_logits, temperature, dim=-1, what="logits")


def dense_logits_kd_loss(
    student_levels: Sequence[torch.Tensor],
    teacher_levels: Sequence[torch.Tensor],
    temperature: float = 1.0,
) -> torch.Tensor:
    """Distillation loss of a dense head's classification logits, one tensor per level.

    Every element is one sigmoid logit (RPN: (N, A, H, W) objectness; RetinaNet:
    (N, A*K, H, W), one per anchor and class), compared with
    :func:`logits_kd_loss` ``binary=True`` per level; the loss is the **mean over levels**.
    Both lists must come from the same images (hence the same anchors). The teacher is
    detached.
    """
    student_levels: List[torch.Tensor] = list(student_levels)
    teacher_levels: List[torch.Tensor] = list(teacher_levels)
    if not teacher_levels or len(student_levels) != len(teacher_levels):
        raise ValueError(
            f"Dense logits: the student has {len(student_levels)} level(s), the teacher "
            f"{len(teacher_levels)}; both need the same, non-zero number of levels."
        )
    losses = [
        logits_kd_loss(s, t, temperature, binary=True)
        for s, t in zip(student_levels, teacher_levels)
    ]
    return torch.stack(losses).mean()
