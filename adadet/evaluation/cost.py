"""What a depth setting costs: FLOPs (fvcore, 1 multiply-add = 1 FLOP, the protocol of the
ImageNet tables in papers) and the parameters that actually take part in a forward pass."""
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

from ..utils.tracing import DetectorTracingAdapter


def fixed_detections(cfg, count: int) -> None:
    """Make every image keep exactly ``count`` detections, whatever the weights, so that
    the ROI heads' cost does not follow them: score threshold 0, NMS that removes nothing
    (IoU 1.0), ``count`` per image; the RPN keeps its POST_NMS_TOPK_TEST proposals.
    Random weights give near-uniform scores that the usual threshold (0.05) would all
    drop, skipping the mask head."""
    cfg.TEST.DETECTIONS_PER_IMAGE = count
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 1.0
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.RETINANET.NMS_THRESH_TEST = 1.0
    cfg.MODEL.RPN.NMS_THRESH = 1.0


def _quiet(analysis):
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


@torch.no_grad()
def backbone_flops(backbone: nn.Module, image_size: Sequence[int] = (224, 224)) -> int:
    """FLOPs of a backbone alone (e.g. the bottom-up ResNet-ADN) on one 3-channel image."""
    was_training = backbone.training
    backbone.eval()
    try:
        image = torch.zeros(1, 3, *image_size, device=next(backbone.parameters()).device)
        return int(_quiet(FlopCountAnalysis(backbone, (image,))).total())
    finally:
        backbone.train(was_training)


def detector_parts(model: nn.Module) -> Dict[str, List[str]]:
    """Part name -> the module paths (inside ``model``) that make it, in the order a
    detector runs them: ``backbone`` (the bottom-up network), ``fpn`` (the rest of
    ``model.backbone``), ``rpn``, ``box_head`` (ROI heads but the mask's), ``mask_head``
    (its pooler too), and RetinaNet's ``head``. Parts the model lacks are left out."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    parts: Dict[str, List[str]] = {}
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        inner = next((n for n in ("bottom_up", "net") if isinstance(getattr(backbone, n, None),
                                                                    nn.Module)), None)
        parts["backbone"] = [f"backbone.{inner}" if inner else "backbone"]
        if inner:
            parts["fpn"] = ["backbone"]  # minus the bottom-up, see model_flops_by_part
    if isinstance(getattr(model, "proposal_generator", None), nn.Module):
        parts["rpn"] = ["proposal_generator"]
    roi_heads = getattr(model, "roi_heads", None)
    if roi_heads is not None:
        parts["box_head"] = ["roi_heads"]  # minus the mask head
        mask = [f"roi_heads.{n}" for n in ("mask_pooler", "mask_head")
                if isinstance(getattr(roi_heads, n, None), nn.Module)]
        if mask:
            parts["mask_head"] = mask
    if isinstance(getattr(model, "head", None), nn.Module):
        parts["head"] = ["head"]
    return parts


@torch.no_grad()
def model_flops_by_part(model: nn.Module, inputs: List[Dict[str, Any]]) -> Dict[str, int]:
    """FLOPs of a whole Detectron2 model in inference on ``inputs`` (its usual list of dicts,
    counted one image at a time), split into :func:`detector_parts` and ``other`` (what runs
    outside them: postprocessing, e.g. pasting masks into the image); the values sum to
    the whole model's FLOPs.

    The ROI heads' share depends on how many boxes the model keeps for the given image.
    """
    parts = detector_parts(model)
    was_training = model.training
    model.eval()
    try:
        split = {name: 0 for name in [*parts, "other"]}
        for one in inputs:
            # the model whole, postprocessing to the image's evaluated size included
            extra = {key: value for key, value in one.items() if key != "image"}
            adapter = DetectorTracingAdapter(model, extra_inputs=extra)
            by_module = _quiet(FlopCountAnalysis(adapter, (one["image"],))).by_module()
            counted = {name: sum(int(by_module.get(f"model.{path}", 0)) for path in paths)
                       for name, paths in parts.items()}
            # the containers hold their sub-parts: count each FLOP once
            if "fpn" in counted:
                counted["fpn"] -= counted["backbone"]
            if "mask_head" in counted:
                counted["box_head"] -= counted["mask_head"]
            counted["other"] = int(by_module[""]) - sum(counted.values())
            for name, flops in counted.items():
                split[name] += flops
        return split
    finally:
        model.train(was_training)


def model_flops(model: nn.Module, inputs: List[Dict[str, Any]]) -> int:
    """FLOPs of a whole Detectron2 model in inference on ``inputs`` (:func:`model_flops_by_part`
    summed)."""
    return sum(model_flops_by_part(model, inputs).values())


@torch.no_grad()
def used_parameter_count(model: nn.Module, *inputs) -> int:
    """Parameters of the modules that run in one forward pass of ``model(*inputs)``: skipped
    blocks and the norm set not in use are not counted."""
    ran = set()
    handles = [
        module.register_forward_hook(lambda module, args, output: ran.add(module))
        for module in model.modules()
    ]
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return sum(p.numel() for module in ran for p in module.parameters(recurse=False))


def backbone_cost(backbone: nn.Module, image_size: Sequence[int] = (224, 224)) -> Dict[str, int]:
    """FLOPs and used parameters of a backbone at its current depth on one image."""
    image = torch.zeros(1, 3, *image_size, device=next(backbone.parameters()).device)
    with torch.no_grad():
        return {
            "flops": backbone_flops(backbone, image_size),
            "params": used_parameter_count(backbone, image),
        }


def model_cost(model: nn.Module, inputs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """FLOPs (in all, and ``parts``: :func:`model_flops_by_part`) and used parameters of a
    whole detector at its current depth on ``inputs``."""
    with torch.no_grad():
        parts = model_flops_by_part(model, inputs)
        return {"flops": sum(parts.values()), "parts": parts,
                "params": used_parameter_count(model, inputs)}
