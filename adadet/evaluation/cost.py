"""What a depth setting costs: FLOPs (fvcore, 1 multiply-add = 1 FLOP, the protocol of the
ImageNet tables in papers) and the parameters that actually take part in a forward pass."""
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

from ..utils.tracing import DetectorTracingAdapter


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


@torch.no_grad()
def model_flops(model: nn.Module, inputs: List[Dict[str, Any]]) -> int:
    """FLOPs of a whole Detectron2 model in inference on ``inputs`` (its usual list of dicts,
    counted one image at a time).

    The ROI heads' share depends on how many boxes the model keeps for the given image.
    """
    was_training = model.training
    model.eval()
    try:
        total = 0
        for one in inputs:
            # the model whole, postprocessing to the image's evaluated size included
            extra = {key: value for key, value in one.items() if key != "image"}
            adapter = DetectorTracingAdapter(model, extra_inputs=extra)
            total += int(_quiet(FlopCountAnalysis(adapter, (one["image"],))).total())
        return total
    finally:
        model.train(was_training)


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


def model_cost(model: nn.Module, inputs: List[Dict[str, Any]]) -> Dict[str, int]:
    """FLOPs and used parameters of a whole detector at its current depth on ``inputs``."""
    with torch.no_grad():
        return {"flops": model_flops(model, inputs), "params": used_parameter_count(model, inputs)}
