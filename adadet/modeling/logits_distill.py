"""Where the classification logits that ``MODEL.ADN.DISTILL.LOGITS_WEIGHT`` distills come
from: the dense head (RPN objectness, RetinaNet classes) and the ROI box branch, found
once per detector and recorded with forward hooks during a pass (the losses themselves
are in :mod:`.distill`)."""
import contextlib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["capture_dense_logits", "capture_roi_teacher", "logits_distill_heads", "roi_class_scores"]


def logits_distill_heads(detector: nn.Module) -> Tuple[Optional[nn.Module], Optional[nn.Module]]:
    """``(dense_head, roi_heads)`` whose classification logits ``LOGITS_WEIGHT``
    distills; either may be None, not both.

    dense_head: ``proposal_generator.rpn_head`` of an :class:`RPN` (its output[0]: a list
    per level of (N, A, H, W) objectness logits) or the ``head`` of a :class:`RetinaNet`
    (output[0]: per level (N, A*K, H, W) class logits). roi_heads: a StandardROIHeads-like
    module with one ``box_pooler``, ``box_head`` and a ``FastRCNNOutputLayers``
    ``box_predictor`` (Detectron2 v0.6 and main).

    Raises ValueError for what it cannot distill (Cascade R-CNN, Res5ROIHeads, other
    proposal generators or meta-architectures).
    """
    from detectron2.modeling.meta_arch.retinanet import RetinaNet
    from detectron2.modeling.proposal_generator.rpn import RPN
    from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

    fix = "set MODEL.ADN.DISTILL.LOGITS_WEIGHT to 0.0 (feature distillation still applies)"
    name = type(detector).__name__
    dense_head = None
    proposal_generator = getattr(detector, "proposal_generator", None)
    if isinstance(proposal_generator, RPN):
        dense_head = proposal_generator.rpn_head
    elif proposal_generator is not None:
        raise ValueError(
            f"MODEL.ADN.DISTILL.LOGITS_WEIGHT > 0 distills the logits of Detectron2's RPN; "
            f"{name}'s proposal generator is a {type(proposal_generator).__name__}. "
            f"Unsupported: {fix}."
        )
    elif isinstance(detector, RetinaNet):
        dense_head = detector.head

    roi_heads = getattr(detector, "roi_heads", None)
    if roi_heads is not None:
        predictor = getattr(roi_heads, "box_predictor", None)
        box_head = getattr(roi_heads, "box_head", None)
        if (
            not isinstance(predictor, FastRCNNOutputLayers)
            or not isinstance(box_head, nn.Module)
            or isinstance(box_head, (nn.ModuleList, nn.ModuleDict))
            or getattr(roi_heads, "box_pooler", None) is None
            or not hasattr(roi_heads, "box_in_features")
        ):
            raise ValueError(
                f"MODEL.ADN.DISTILL.LOGITS_WEIGHT > 0 distills ROI class scores of heads with "
                f"one box_pooler, box_head and FastRCNNOutputLayers box_predictor "
                f"(StandardROIHeads); {type(roi_heads).__name__} is not one (Cascade R-CNN "
                f"has a box head and predictor per stage, Res5ROIHeads has no box_pooler). "
                f"Unsupported: {fix}."
            )
    if dense_head is None and roi_heads is None:
        raise ValueError(
            f"MODEL.ADN.DISTILL.LOGITS_WEIGHT > 0 distills the classification logits of an "
            f"RPN, ROI heads or a RetinaNet head; {name} has none of them. Unsupported: {fix}."
        )
    return dense_head, roi_heads


@contextlib.contextmanager
def capture_dense_logits(head: nn.Module):
    """Record, while the block runs, the classification logits a dense head returns
    (its output[0], a list of per-level tensors): a list with one entry per call. The
    forward hook is removed on exit."""
    calls: List[List[torch.Tensor]] = []
    handle = head.register_forward_hook(
        lambda module, inputs, output: calls.append(list(output[0]))
    )
    try:
        yield calls
    finally:
        handle.remove()


@contextlib.contextmanager
def capture_roi_teacher(roi_heads: nn.Module):
    """Record, while the block runs, the boxes given to ``roi_heads.box_pooler`` (not the
    mask or keypoint poolers) and the class scores ``roi_heads.box_predictor`` returns:
    yields ``{"boxes": [...], "scores": [...]}``, one entry per call. Both forward hooks
    are removed on exit."""
    record: Dict[str, list] = {"boxes": [], "scores": []}

    def on_pooler(module, args, kwargs, output):
        box_lists = args[1] if len(args) > 1 else kwargs["box_lists"]
        # proposals carry no gradient; detach anyway: they are the teacher's
        record["boxes"].append([type(b)(b.tensor.detach()) for b in box_lists])

    def on_predictor(module, inputs, output):
        record["scores"].append(output[0])

    handles = [roi_heads.box_pooler.register_forward_hook(on_pooler, with_kwargs=True)]
    try:
        handles.append(roi_heads.box_predictor.register_forward_hook(on_predictor))
        yield record
    finally:
        for handle in handles:
            handle.remove()


def roi_class_scores(
    roi_heads: nn.Module, features: Mapping[str, torch.Tensor], boxes: Sequence
) -> torch.Tensor:
    """The class scores (R, K+1) of ``roi_heads``' box branch on given boxes, computed as
    StandardROIHeads._forward_box does: box_pooler -> box_head -> box_predictor."""
    features = [features[f] for f in roi_heads.box_in_features]
    box_features = roi_heads.box_pooler(features, list(boxes))
    box_features = roi_heads.box_head(box_features)
    return roi_heads.box_predictor(box_features)[0]
