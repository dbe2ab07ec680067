"""The self-distillation model: the super-net and its students on the same batch, one call.

:class:`SelfDistillationModel` wraps a detector; one call of its ``forward`` runs

1. the super-net ("FFFF") -> task losses ``L_super``, and its backbone features;
2. a student sub-net (``MODEL.ADN.DISTILL.SUBNETS``; ``NUM_STUDENTS`` of them drawn, plus
   ``ALWAYS_STUDENTS`` at every iteration, each term then the mean over the students)
   -> task losses ``L_sub_task`` and
   ``L_kd``, the KL divergence of its feature maps (``MODEL.ADN.DISTILL.FEATURES``: FPN
   levels and/or bottom-up stage outputs, per position or pooled) to the super-net's
   (detached) ones;
3. only with ``LOGITS_WEIGHT > 0``: ``L_kd_logits``, the KL divergence of the student's
   classification logits to the super-net's (detached) ones, the mean of

   * the dense term: the RPN objectness logits (Faster/Mask R-CNN) or RetinaNet's
     per-class logits, captured by forward hooks during both passes (the same images,
     so the same anchors), as binary (sigmoid) distributions, averaged over levels;
   * the ROI term (R-CNN): the two passes sample different proposals, so the student's
     box branch (``box_pooler`` -> ``box_head`` -> ``box_predictor``) is run once more,
     on the boxes the super-net's ``box_pooler`` received and the student's features,
     and its class scores are compared with the super-net's (softmax over K+1 classes);

and returns every term plus ``total_loss = ALPHA * L_super + (1 - ALPHA) *
(SUB_TASK_WEIGHT * L_sub_task + KD_WEIGHT * L_kd + LOGITS_WEIGHT * L_kd_logits)``.

The passes share what does not depend on the depth (:mod:`.shared_work`): the image
preprocessing and the backbone's stem run once per call.

Both passes live in ONE forward call because DistributedDataParallel allows one forward
per backward, and only the two passes together use every parameter (skippable blocks
run in the super-net only, skip norms in the sub-net only), so DDP needs no
``find_unused_parameters`` for the paper's setting (student "TTTT").

With per-depth BN statistics present (re-estimated for evaluation), a training call
discards them first: they describe the weights before this step.
"""
import contextlib
import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..depth import (
    adaptive_modules,
    expand_depth_list,
    mixed_depths,
    normalize_depth,
    parse_depth,
    using_depth,
)
from ..calibration.depth_bn_statistics import discard_depth_bn_statistics
from .distill import POOLINGS, REDUCTIONS, dense_logits_kd_loss, feature_kd_loss, logits_kd_loss
from .distill_features import (
    capture_backbone_features,
    capture_features,
    distillable_features,
    stage_output_names,
)
from .logits_distill import (
    capture_dense_logits,
    capture_roi_teacher,
    logits_distill_heads,
    roi_class_scores,
)
from .shared_work import share_depth_independent_work

__all__ = [
    "KD_KEY",
    "KD_LOGITS_KEY",
    "SUB_PREFIX",
    "SUPER_PREFIX",
    "TOTAL_KEY",
    "SelfDistillationModel",
    "unwrap_detector",
]

logger = logging.getLogger(__name__)

SUPER_PREFIX = "super/"
SUB_PREFIX = "sub/"
KD_KEY = "loss_kd"
KD_LOGITS_KEY = "loss_kd_logits"
TOTAL_KEY = "total_loss"


def _single_call(calls: list, depth: str, what: str = "The backbone"):
    if len(calls) != 1:
        raise RuntimeError(
            f"{what} ran {len(calls)} times in one training forward at depth {depth}; "
            "self-distillation expects one call per pass."
        )
    return calls[0]


class _Pass(NamedTuple):
    """What one pass of :meth:`SelfDistillationModel._run_pass` computed."""

    losses: Dict[str, torch.Tensor]
    features: Dict[str, torch.Tensor]  # what the backbone returned
    distilled: Dict[str, torch.Tensor]  # the maps of MODEL.ADN.DISTILL.FEATURES
    dense_logits: Optional[List[torch.Tensor]]  # with LOGITS_WEIGHT > 0 and a dense head
    roi: Optional[Tuple[list, torch.Tensor]]  # (boxes per image, scores): teacher, ROI heads


def unwrap_detector(model: nn.Module) -> nn.Module:
    """The detector inside DDP / DataParallel / :class:`SelfDistillationModel` wrappers."""
    while True:
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        elif isinstance(model, SelfDistillationModel):
            model = model.detector
        else:
            return model


class SelfDistillationModel(nn.Module):
    """Train-time wrapper of an ADN detector: runs the super-net and a sub-net in one call.

    In eval mode it is the detector itself (at the detector's current depth). With
    ``distill=False`` it trains the super-net alone and returns the detector's own losses.
    The wrapper adds no parameters or buffers: checkpoints are the detector's.

    Every argument is the ``MODEL.ADN.DISTILL`` key of the same name (``distill``:
    ``ENABLED``), and the defaults are ``add_adn_config``'s, so that Python code and
    configs train the same thing. ``None`` stands for the defaults that depend on the
    detector: ``subnets`` the mixed settings of its stages, ``always_students`` its
    base-net, ``features`` its adaptive stages' outputs (ResNet-ADN ``res2``..``res5``,
    ViT-ADN ``group1``..``group4``).
    """

    def __init__(
        self,
        detector: nn.Module,
        *,
        distill: bool = True,
        subnets: Optional[Sequence[str]] = None,
        num_students: int = 1,
        always_students: Optional[Sequence[str]] = None,
        alpha: float = 0.5,
        sub_task_weight: float = 1.0,
        kd_weight: float = 1.0,
        temperature: float = 1.0,
        features: Optional[Sequence[str]] = None,
        pooling: str = "none",
        reduction: str = "mean",
        logits_weight: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        self.detector = detector
        num_stages = adaptive_modules(detector)[0].num_adaptive_stages
        self.super_depth = normalize_depth("super", num_stages)
        self.distill = bool(distill)
        if subnets is None:
            subnets = mixed_depths(num_stages)
        if always_students is None:
            always_students = [normalize_depth("base", num_stages)]
        if features is None:
            features = stage_output_names(detector)
        self.subnets = expand_depth_list(list(subnets), num_stages)
        if isinstance(num_students, bool) or not isinstance(num_students, int) or num_students < 1:
            raise ValueError(
                f"MODEL.ADN.DISTILL.NUM_STUDENTS must be an integer >= 1, got {num_students!r}."
            )
        self.num_students = num_students
        self.always_students = (
            expand_depth_list(list(always_students), num_stages) if always_students else []
        )
        twice = [s for s in self.always_students if s in self.subnets]
        if twice:
            raise ValueError(
                f"MODEL.ADN.DISTILL.ALWAYS_STUDENTS {twice} are also in SUBNETS, which are "
                "drawn from: a student is either drawn or always there. Fix: remove them from "
                "SUBNETS (the default: ALWAYS_STUDENTS ['TTTT'] with SUBNETS the 14 mixed "
                "settings), or, for the paper's base-net alone, SUBNETS ['TTTT'] with "
                "ALWAYS_STUDENTS []."
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"MODEL.ADN.DISTILL.ALPHA must be in [0, 1], got {alpha}.")
        if temperature <= 0:
            raise ValueError(
                f"MODEL.ADN.DISTILL.TEMPERATURE must be a float > 0 (the temperature of the "
                f"distillation softmaxes), got {temperature}. Fix: e.g. "
                "MODEL.ADN.DISTILL.TEMPERATURE 1.0 (the authors' value)."
            )
        for key, value in (("SUB_TASK_WEIGHT", sub_task_weight), ("KD_WEIGHT", kd_weight)):
            if not value >= 0:  # also refuses NaN
                raise ValueError(
                    f"MODEL.ADN.DISTILL.{key} must be >= 0 (a weight of a loss term), got "
                    f"{value}; 0 turns the term off."
                )
        if pooling not in POOLINGS:
            raise ValueError(f"MODEL.ADN.DISTILL.POOLING must be one of {POOLINGS}, got {pooling!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"MODEL.ADN.DISTILL.REDUCTION must be one of {REDUCTIONS}, got {reduction!r}."
            )
        self.pooling = pooling
        self.reduction = reduction
        self.alpha = float(alpha)
        self.sub_task_weight = float(sub_task_weight)
        self.kd_weight = float(kd_weight)
        self.temperature = float(temperature)
        self.features = list(features)
        if logits_weight < 0:
            raise ValueError(f"MODEL.ADN.DISTILL.LOGITS_WEIGHT must be >= 0, got {logits_weight}.")
        self.logits_weight = float(logits_weight)
        self.seed = int(seed)
        # Preprocessing and the backbone's stem run once per iteration for all passes
        # (.shared_work). False runs every pass from the raw batch, as before: the
        # reference the tests compare with. Besides time and memory, sharing changes one
        # thing: a BatchNorm in the stem (train mode) updates its running statistics once
        # per iteration, not twice with the same batch statistics. Once is what a stock
        # Detectron2 iteration does, and what every other norm of the bottom-up does here
        # (main norms run in the super-net, skip norms in the student only); twice made
        # the stem's effective momentum 2m - m^2 instead of MOMENTUM m and counted each
        # batch twice in num_batches_tracked.
        self.share_work = True
        self._calls = 0
        if self.distill:
            self._check_features()
            if self.logits_weight > 0:
                # found once (raises for what cannot be distilled); a tuple, so that
                # nn.Module does not register the heads a second time
                self._logits_heads = logits_distill_heads(detector)
            if self.super_depth in self.subnets + self.always_students:
                logger.warning(
                    "MODEL.ADN.DISTILL.SUBNETS or ALWAYS_STUDENTS contains the super-net %s: "
                    "as a student it equals its teacher (zero KD loss, a second super-net task loss).",
                    self.super_depth,
                )

    @classmethod
    def from_config(cls, cfg, detector: nn.Module) -> "SelfDistillationModel":
        d = cfg.MODEL.ADN.DISTILL
        return cls(
            detector,
            distill=d.ENABLED,
            subnets=list(d.SUBNETS),
            num_students=d.NUM_STUDENTS,
            always_students=list(d.ALWAYS_STUDENTS),
            alpha=d.ALPHA,
            sub_task_weight=d.SUB_TASK_WEIGHT,
            kd_weight=d.KD_WEIGHT,
            temperature=d.TEMPERATURE,
            features=list(d.FEATURES),
            pooling=d.POOLING,
            reduction=d.REDUCTION,
            logits_weight=d.LOGITS_WEIGHT,
            # The same on every rank (SEED < 0 means "random" in Detectron2, which would
            # let the ranks of a DDP run pick different sub-nets).
            seed=cfg.SEED if cfg.SEED >= 0 else 0,
        )

    def _check_features(self) -> None:
        if not self.features:
            raise ValueError(
                "MODEL.ADN.DISTILL.FEATURES is empty: name the maps to distill, e.g. "
                "['res2', 'res3', 'res4', 'res5'] or ['p2', 'p3', 'p4', 'p5', 'p6']."
            )
        available = distillable_features(self.detector)
        unknown = [f for f in self.features if f not in available]
        if unknown:
            raise ValueError(
                f"MODEL.ADN.DISTILL.FEATURES names {unknown}, which this model does not "
                f"compute; it has {available} (backbone outputs, then stage outputs)."
            )
        duplicates = sorted({f for f in self.features if self.features.count(f) > 1})
        if duplicates:
            raise ValueError(f"MODEL.ADN.DISTILL.FEATURES names {duplicates} more than once.")

    @property
    def uses_every_parameter(self) -> bool:
        """Whether every trainable parameter gets a gradient at every step, so DDP can run
        without ``find_unused_parameters``: only when every student skips in every stage
        (the skip norms of a stage run only while it skips): every drawn student, or one
        that is always there, is the base-net."""
        if not self.distill:
            return False
        num_stages = len(parse_depth(self.super_depth))
        skips_all = [all(parse_depth(s, num_stages)) for s in self.always_students]
        return any(skips_all) or all(all(parse_depth(s, num_stages)) for s in self.subnets)

    def students_for_iteration(self, iteration: int) -> List[str]:
        """The students of an iteration: ``always_students``, then ``num_students`` of
        ``subnets``, drawn without replacement, seeded by (seed, iteration), so all DDP
        ranks pick the same ones and a resumed run continues the same sequence. All of them
        when there are no more."""
        return self.always_students + self._drawn_students(iteration)

    def _drawn_students(self, iteration: int) -> List[str]:
        if self.num_students >= len(self.subnets):
            return list(self.subnets)
        rng = np.random.default_rng([self.seed, int(iteration)])
        if self.num_students == 1:
            return [self.subnets[int(rng.integers(len(self.subnets)))]]
        picks = rng.choice(len(self.subnets), size=self.num_students, replace=False)
        return [self.subnets[int(i)] for i in sorted(picks)]

    def forward(self, batched_inputs, iteration: Optional[int] = None):
        if not self.training:
            return self.detector(batched_inputs)
        if iteration is None:  # called outside the trainer (e.g. PreciseBN)
            iteration = self._calls
        self._calls += 1
        # statistics re-estimated per depth describe the weights before this step
        discard_depth_bn_statistics(self.detector)

        if not self.distill:
            with using_depth(self.detector, self.super_depth):
                return self.detector(batched_inputs)

        with contextlib.ExitStack() as stack:
            if self.share_work:
                stack.enter_context(share_depth_independent_work(self.detector))
            teacher = self._run_pass(batched_inputs, self.super_depth, "super", teacher=True)
            students = [
                self._student_terms(batched_inputs, teacher, subnet)
                for subnet in self.students_for_iteration(iteration)
            ]
        # several students: each term is their mean, so the weights keep their meaning
        student_terms = {k: torch.stack([s[k] for s in students]).mean() for k in students[0]}
        student_total = student_terms.pop(TOTAL_KEY)
        total = self.alpha * sum(teacher.losses.values()) + (1.0 - self.alpha) * student_total
        terms = {SUPER_PREFIX + k: v for k, v in teacher.losses.items()}
        terms.update(student_terms)
        terms[TOTAL_KEY] = total
        return terms

    def _student_terms(self, batched_inputs, teacher: "_Pass", subnet: str) -> Dict[str, torch.Tensor]:
        """One student's pass: its task losses (``sub/...``), ``loss_kd`` (and
        ``loss_kd_logits``) and, as ``total_loss``, their weighted sum
        ``SUB_TASK_WEIGHT * L_sub + KD_WEIGHT * L_kd (+ LOGITS_WEIGHT * L_kd_logits)``."""
        student = self._run_pass(batched_inputs, subnet, "sub")
        loss_kd = feature_kd_loss(
            student.distilled,
            teacher.distilled,
            self.temperature,
            self.features,
            pooling=self.pooling,
            reduction=self.reduction,
        )
        total = self.sub_task_weight * sum(student.losses.values()) + self.kd_weight * loss_kd
        terms = {SUB_PREFIX + k: v for k, v in student.losses.items()}
        terms[KD_KEY] = loss_kd
        if self.logits_weight > 0:
            terms[KD_LOGITS_KEY] = self._logits_kd_loss(teacher, student)
            total = total + self.logits_weight * terms[KD_LOGITS_KEY]
        terms[TOTAL_KEY] = total
        return terms

    def _run_pass(self, batched_inputs, depth: str, scope: str, teacher: bool = False) -> _Pass:
        """The detector's losses at ``depth`` and the backbone features it computed, and
        with ``LOGITS_WEIGHT > 0`` its dense-head logits and (``teacher``) the boxes and
        class scores of its ROI box branch. The statistics the detector logs itself
        (rpn/num_pos_anchors, ...) go under ``scope/`` so the two passes do not overwrite
        each other."""
        storage = get_event_storage()
        dense_head = roi_heads = None
        if self.logits_weight > 0:
            dense_head, roi_heads = self._logits_heads
        with contextlib.ExitStack() as stack:
            stack.enter_context(using_depth(self.detector, depth))
            calls = stack.enter_context(capture_backbone_features(self.detector))
            distilled = stack.enter_context(capture_features(self.detector, self.features))
            dense_calls = roi_record = None
            if dense_head is not None:
                dense_calls = stack.enter_context(capture_dense_logits(dense_head))
            if teacher and roi_heads is not None:
                roi_record = stack.enter_context(capture_roi_teacher(roi_heads))
            stack.enter_context(storage.name_scope(scope))
            losses = self.detector(batched_inputs)
        dense_logits = roi = None
        if dense_calls is not None:
            dense_logits = _single_call(dense_calls, depth, type(dense_head).__name__)
        if roi_record is not None:
            roi = (
                _single_call(roi_record["boxes"], depth, "roi_heads.box_pooler"),
                _single_call(roi_record["scores"], depth, "roi_heads.box_predictor"),
            )
        distilled = {name: _single_call(maps, depth, name) for name, maps in distilled.items()}
        return _Pass(losses, _single_call(calls, depth), distilled, dense_logits, roi)

    def _logits_kd_loss(self, teacher: _Pass, student: _Pass) -> torch.Tensor:
        """``L_kd_logits``: the mean of the dense-head term and the ROI term (those the
        detector has). The ROI term runs the student's box branch on the teacher's boxes."""
        terms = []
        if teacher.dense_logits is not None:
            terms.append(
                dense_logits_kd_loss(student.dense_logits, teacher.dense_logits, self.temperature)
            )
        if teacher.roi is not None:
            boxes, teacher_scores = teacher.roi
            _, roi_heads = self._logits_heads
            student_scores = roi_class_scores(roi_heads, student.features, boxes)
            if teacher_scores.shape[0] == 0:  # no box at all: nothing to compare
                terms.append(student_scores.float().sum() * 0.0)
            else:
                terms.append(logits_kd_loss(student_scores, teacher_scores, self.temperature))
        return torch.stack(terms).mean()
