"""The options of self-distillation (``MODEL.ADN.DISTILL``), checked once.

:class:`DistillOptions` is what :class:`~adadet.modeling.SelfDistillationModel` trains
with: built from a config (:meth:`DistillOptions.from_config`) or from the keywords of the
lazy configs, it refuses a bad value when it is built, naming the config key. The values
that depend on the detector (the default students and distilled maps, the depth settings
spelled out) are filled in by :meth:`DistillOptions.for_detector`.
"""
import dataclasses
import logging
import numbers
from typing import Optional, Tuple

import torch.nn as nn

from ..depth import depth_layout
from .distill import check_kd_options
from .distill_features import distillable_features, stage_output_names

__all__ = ["DistillOptions"]

KEY = "MODEL.ADN.DISTILL."
#: Temperatures outside this range are legal but almost surely a mistake (the authors: 1).
PLAUSIBLE_TEMPERATURES = (0.1, 20.0)

logger = logging.getLogger(__name__)
_WARNED = set()  # (key, value): each doubtful value is named once per process


def _warn_once(key: str, value, what: str) -> None:
    if (key, value) not in _WARNED:
        _WARNED.add((key, value))
        logger.warning("%s%s %s: %s", KEY, key, value, what)


def _doubtful_values(options: "DistillOptions") -> None:
    """Warn of values that are legal but almost surely wrong, saying what they do."""
    if not options.distill:
        return
    if options.alpha == 1.0:
        _warn_once("ALPHA", 1.0, "the students' terms have weight 0, so they run every "
                   "iteration (the cost of self-distillation) and learn nothing; their skip "
                   "norms never train. The authors use 0.5; ENABLED False trains the super-net "
                   "alone without the students' cost.")
    elif options.alpha == 0.0:
        _warn_once("ALPHA", 0.0, "the super-net's task loss has weight 0: the teacher never "
                   "learns the task, and the students learn from an untrained teacher. The "
                   "authors use 0.5.")
    low, high = PLAUSIBLE_TEMPERATURES
    if not low <= options.temperature <= high:
        _warn_once("TEMPERATURE", options.temperature, "the distillation loss is scaled by "
                   f"T^2 = {options.temperature ** 2:g}, which swamps (or silences) the task "
                   "losses. The authors use 1.")


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{KEY}{name} must be a number, got {value!r} ({type(value).__name__}).")
    return float(value)


def _non_negative_weight(name: str, value) -> float:
    value = _number(name, value)
    if not value >= 0:  # also refuses NaN
        raise ValueError(
            f"{KEY}{name} must be >= 0 (a weight of a loss term), got {value}; 0 turns the "
            "term off."
        )
    return value


def _names(value) -> Optional[Tuple[str, ...]]:
    return None if value is None else tuple(value)


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    """Every field is the ``MODEL.ADN.DISTILL`` key of the same name in capitals
    (``distill``: ``ENABLED``; ``seed``: the config's ``SEED``), and the defaults are
    ``add_adn_config``'s: the paper's students, the base-net alone. ``None`` stands for
    the defaults that depend on the detector: ``subnets`` its base-net, ``features`` its
    adaptive stages' outputs (ResNet-ADN ``res2``..``res5``, ViT-ADN ``group1``..``group4``).
    """

    distill: bool = True
    subnets: Optional[Tuple[str, ...]] = None
    num_students: int = 1
    always_students: Tuple[str, ...] = ()
    alpha: float = 0.5
    sub_task_weight: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 1.0
    features: Optional[Tuple[str, ...]] = None
    pooling: str = "none"
    reduction: str = "mean"
    logits_weight: float = 0.0
    seed: int = 0

    def __post_init__(self):
        # Lists (YACS, lazy configs) become tuples, numbers floats: the options are frozen.
        normalized = dict(
            distill=bool(self.distill),
            subnets=_names(self.subnets),
            always_students=_names(self.always_students),
            features=_names(self.features),
            alpha=_number("ALPHA", self.alpha),
            temperature=_number("TEMPERATURE", self.temperature),
            sub_task_weight=_non_negative_weight("SUB_TASK_WEIGHT", self.sub_task_weight),
            kd_weight=_non_negative_weight("KD_WEIGHT", self.kd_weight),
            logits_weight=_non_negative_weight("LOGITS_WEIGHT", self.logits_weight),
            seed=int(self.seed),
        )
        for name, value in normalized.items():
            object.__setattr__(self, name, value)
        n = self.num_students
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{KEY}NUM_STUDENTS must be an integer >= 1, got {n!r}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"{KEY}ALPHA must be in [0, 1], got {self.alpha}.")
        check_kd_options(
            temperature=self.temperature, pooling=self.pooling, reduction=self.reduction
        )
        _doubtful_values(self)

    @classmethod
    def from_config(cls, cfg) -> "DistillOptions":
        d = cfg.MODEL.ADN.DISTILL
        return cls(
            distill=d.ENABLED,
            subnets=d.SUBNETS,
            num_students=d.NUM_STUDENTS,
            always_students=d.ALWAYS_STUDENTS,
            alpha=d.ALPHA,
            sub_task_weight=d.SUB_TASK_WEIGHT,
            kd_weight=d.KD_WEIGHT,
            temperature=d.TEMPERATURE,
            features=d.FEATURES,
            pooling=d.POOLING,
            reduction=d.REDUCTION,
            logits_weight=d.LOGITS_WEIGHT,
            # The same on every rank (SEED < 0 means "random" in Detectron2, which would
            # let the ranks of a DDP run pick different sub-nets).
            seed=cfg.SEED if cfg.SEED >= 0 else 0,
        )

    def for_detector(self, detector: nn.Module) -> "DistillOptions":
        """These options for ``detector``: the defaults that depend on it filled in, the
        depth settings spelled out (``"base"`` -> ``"TTTT"``), the students and the
        distilled maps checked against it."""
        layout = depth_layout(detector)
        subnets = self.subnets
        if subnets is None:
            subnets = ["base"]
        if not subnets:
            raise ValueError(
                f"{KEY}SUBNETS is empty: the students are drawn from it. Fix: give the "
                "settings to draw from, e.g. ['base'] (the paper's student, the default), or "
                "the sandwich recipe's ['mixed'] with ALWAYS_STUDENTS ['base']; the super-net "
                f"({'F' * layout.num_flags}) is the teacher, not a student."
            )

        def expanded(key, settings):  # a bad entry names its key
            try:
                return tuple(layout.expand(list(settings)))
            except (TypeError, ValueError) as e:
                raise type(e)(f"{KEY}{key} {list(settings)}: {e}") from None

        resolved = dataclasses.replace(
            self,
            subnets=expanded("SUBNETS", subnets),
            always_students=(
                expanded("ALWAYS_STUDENTS", self.always_students) if self.always_students
                else ()
            ),
            features=(
                tuple(stage_output_names(detector)) if self.features is None else self.features
            ),
        )
        twice = [s for s in resolved.always_students if s in resolved.subnets]
        if twice:
            raise ValueError(
                f"{KEY}ALWAYS_STUDENTS {twice} are also in SUBNETS, which are drawn from: a "
                "student is either drawn or always there. Fix: remove them from SUBNETS (the "
                "sandwich recipe: ALWAYS_STUDENTS ['TTTT'] with SUBNETS the 14 mixed "
                "settings), or, for the paper's base-net alone (the default), SUBNETS "
                "['TTTT'] with ALWAYS_STUDENTS []."
            )
        if resolved.distill:
            resolved._check_features(detector)
        return resolved

    def _check_features(self, detector: nn.Module) -> None:
        if not self.features:
            raise ValueError(
                f"{KEY}FEATURES is empty: name the maps to distill, e.g. "
                "['res2', 'res3', 'res4', 'res5'] or ['p2', 'p3', 'p4', 'p5', 'p6']."
            )
        available = distillable_features(detector)
        unknown = [f for f in self.features if f not in available]
        if unknown:
            raise ValueError(
                f"{KEY}FEATURES names {unknown}, which this model does not compute; it has "
                f"{available} (backbone outputs, then stage outputs)."
            )
        duplicates = sorted({f for f in self.features if self.features.count(f) > 1})
        if duplicates:
            raise ValueError(f"{KEY}FEATURES names {duplicates} more than once.")
