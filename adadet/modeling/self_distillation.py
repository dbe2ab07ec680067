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

and returns every term weighted, so that their plain sum is the loss (as every
Detectron2 model's terms are): ``ALPHA * L_super + (1 - ALPHA) * (SUB_TASK_WEIGHT *
L_sub_task + KD_WEIGHT * L_kd + LOGITS_WEIGHT * L_kd_logits)``. Detectron2's step
back-propagates and logs them; the unweighted task-loss sum of each pass goes to the
EventStorage as ``super/total_loss`` and ``sub/total_loss``.

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
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..calibration.depth_bn_statistics import discard_depth_bn_statistics
from ..depth import BACKBONE_PART, depth_layout, using_depth
from .distill import dense_logits_kd_loss, feature_kd_loss, logits_kd_loss
from .distill_options import DistillOptions
from .distill_features import capture_backbone_features, capture_features
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

    What it trains is a :class:`DistillOptions` (each field the ``MODEL.ADN.DISTILL`` key
    of the same name; the defaults ``add_adn_config``'s, so that Python code and configs
    train the same thing: the paper's students, the base-net alone), given as such or as
    its fields' keywords; ``options`` holds them resolved for the detector.
    """

    def __init__(self, detector: nn.Module, options: Optional[DistillOptions] = None, **settings):
        """``options``, or their fields as keywords (as the lazy configs' ``adn.distill``
        gives them)."""
        super().__init__()
        if options is not None and settings:
            raise TypeError(
                f"SelfDistillationModel takes DistillOptions or their fields as keywords, not "
                f"both (got options and {sorted(settings)})."
            )
        self.detector = detector
        self.options = (options or DistillOptions(**settings)).for_detector(detector)
        self.super_depth = depth_layout(detector).normalize("super")
        # Preprocessing and the backbone's stem run once per iteration for all passes
        # (.shared_work). False runs every pass from the raw batch: the reference the
        # tests compare with. Besides time and memory, sharing changes one thing: a
        # BatchNorm in the stem (train mode) updates its running statistics once per
        # iteration, as in a stock Detectron2 iteration and as every other norm of the
        # bottom-up does here (main norms run in the super-net, skip norms in the student
        # only); once per pass would make the stem's effective momentum 2m - m^2 instead
        # of MOMENTUM m and count each batch twice in num_batches_tracked.
        self.share_work = True
        if self.options.distill:
            if self.options.logits_weight > 0:
                # found once (raises for what cannot be distilled); a tuple, so that
                # nn.Module does not register the heads a second time
                self._logits_heads = logits_distill_heads(detector)
            if self.super_depth in self.options.subnets + self.options.always_students:
                logger.warning(
                    "MODEL.ADN.DISTILL.SUBNETS or ALWAYS_STUDENTS contains the super-net %s: "
                    "as a student it equals its teacher (zero KD loss, a second super-net task loss).",
                    self.super_depth,
                )

    @classmethod
    def from_config(cls, cfg, detector: nn.Module) -> "SelfDistillationModel":
        return cls(detector, DistillOptions.from_config(cfg))

    @property
    def uses_every_parameter(self) -> bool:
        """Whether every trainable parameter gets a gradient at every step, so DDP can run
        without ``find_unused_parameters``: only when every student skips in every stage
        (the skip norms of a stage run only while it skips): every drawn student, or one
        that is always there, is the base-net."""
        if not self.options.distill:
            return False
        layout = depth_layout(self.detector)

        def skips_every_stage(setting: str) -> bool:  # skip norms live in the backbone only
            return set(layout.part_setting(setting, BACKBONE_PART)) == {"T"}

        return any(map(skips_every_stage, self.options.always_students)) or all(
            map(skips_every_stage, self.options.subnets)
        )

    def students_for_iteration(self, iteration: int) -> List[str]:
        """The students of an iteration: ``always_students``, then ``num_students`` of
        ``subnets``, drawn without replacement, seeded by (seed, iteration), so all DDP
        ranks pick the same ones and a resumed run continues the same sequence. All of them
        when there are no more."""
        return list(self.options.always_students) + self._drawn_students(iteration)

    def _drawn_students(self, iteration: int) -> List[str]:
        if self.options.num_students >= len(self.options.subnets):
            return list(self.options.subnets)
        rng = np.random.default_rng([self.options.seed, int(iteration)])
        if self.options.num_students == 1:
            return [self.options.subnets[int(rng.integers(len(self.options.subnets)))]]
        subnets = self.options.subnets
        picks = rng.choice(len(subnets), size=self.options.num_students, replace=False)
        return [subnets[int(i)] for i in sorted(picks)]

    def forward(self, batched_inputs, iteration: Optional[int] = None):
        if not self.training:
            return self.detector(batched_inputs)
        storage = get_event_storage()
        if iteration is None:  # the trainer's: the step sets storage.iter before each call
            iteration = storage.iter
        # statistics re-estimated per depth describe the weights before this step
        discard_depth_bn_statistics(self.detector)

        if not self.options.distill:
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
        storage.put_scalar(SUPER_PREFIX + TOTAL_KEY, float(sum(teacher.losses.values()).detach()))
        sub_task = sum(v for k, v in student_terms.items() if k.startswith(SUB_PREFIX))
        storage.put_scalar(SUB_PREFIX + TOTAL_KEY, float(sub_task.detach()))
        terms = {SUPER_PREFIX + k: self.options.alpha * v for k, v in teacher.losses.items()}
        terms.update((k, self._student_weight(k) * v) for k, v in student_terms.items())
        return terms

    def _student_weight(self, key: str) -> float:
        """The factor of a student term in the loss."""
        if key.startswith(SUB_PREFIX):
            weight = self.options.sub_task_weight
        else:
            weight = {
                KD_KEY: self.options.kd_weight, KD_LOGITS_KEY: self.options.logits_weight
            }[key]
        return (1.0 - self.options.alpha) * weight

    def _student_terms(self, batched_inputs, teacher: "_Pass", subnet: str) -> Dict[str, torch.Tensor]:
        """One student's pass, unweighted: its task losses (``sub/...``), ``loss_kd`` and,
        with ``LOGITS_WEIGHT > 0``, ``loss_kd_logits``."""
        student = self._run_pass(batched_inputs, subnet, "sub")
        loss_kd = feature_kd_loss(
            student.distilled,
            teacher.distilled,
            self.options.temperature,
            self.options.features,
            pooling=self.options.pooling,
            reduction=self.options.reduction,
        )
        terms = {SUB_PREFIX + k: v for k, v in student.losses.items()}
        terms[KD_KEY] = loss_kd
        if self.options.logits_weight > 0:
            terms[KD_LOGITS_KEY] = self._logits_kd_loss(teacher, student)
        return terms

    def _run_pass(self, batched_inputs, depth: str, scope: str, teacher: bool = False) -> _Pass:
        """The detector's losses at ``depth`` and the backbone features it computed, and
        with ``LOGITS_WEIGHT > 0`` its dense-head logits and (``teacher``) the boxes and
        class scores of its ROI box branch. The statistics the detector logs itself
        (rpn/num_pos_anchors, ...) go under ``scope/`` so the two passes do not overwrite
        each other."""
        storage = get_event_storage()
        dense_head = roi_heads = None
        if self.options.logits_weight > 0:
            dense_head, roi_heads = self._logits_heads
        with contextlib.ExitStack() as stack:
            stack.enter_context(using_depth(self.detector, depth))
            calls = stack.enter_context(capture_backbone_features(self.detector))
            distilled = stack.enter_context(capture_features(self.detector, self.options.features))
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
                dense_logits_kd_loss(
                    student.dense_logits, teacher.dense_logits, self.options.temperature
                )
            )
        if teacher.roi is not None:
            boxes, teacher_scores = teacher.roi
            _, roi_heads = self._logits_heads
            student_scores = roi_class_scores(roi_heads, student.features, boxes)
            if teacher_scores.shape[0] == 0:  # no box at all: nothing to compare
                terms.append(student_scores.float().sum() * 0.0)
            else:
                terms.append(
                    logits_kd_loss(student_scores, teacher_scores, self.options.temperature)
                )
        return torch.stack(terms).mean()
