"""Evaluate one checkpoint at several depth settings: accuracy, FLOPs, parameters, latency.

For each depth setting the caller's evaluation (Detectron2's ``inference_on_dataset`` with
COCOEvaluator, through ``ADNTrainer.test_at_depth``) runs on the switched model while a
timer records the latency of every forward call; the cost (FLOPs and used parameters of
the whole detector) is counted on the first test image at its evaluated size.

Results are nested ``{depth: {task: {metric: value}}, "cost": {...}}`` so that Detectron2's
EvalHook flattens them into scalars like ``TTFF/bbox/AP`` for metrics.json and TensorBoard.
"""
import logging
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Sequence

import torch
import torch.nn as nn

from ..depth import using_depth
from .cost import backbone_flops, model_cost
from ..utils.timing import ForwardTimer

#: The backbone's FLOPs are counted on one image of this size (the protocol of ImageNet
#: tables): unlike the whole detector's, they do not follow the number of detections.
BACKBONE_COST_SIZE = (224, 224)

logger = logging.getLogger(__name__)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def evaluate_depths(
    detector: nn.Module,
    depths: Sequence[str],
    evaluate_at_depth: Callable[[str], Mapping[str, Any]],
    cost_inputs: List[Dict[str, Any]],
) -> "OrderedDict[str, Dict[str, Any]]":
    """Evaluate ``detector`` at each of ``depths``.

    Args:
        detector: the bare Detectron2 model (not DDP-wrapped).
        depths: canonical depth settings (``adadet.expand_depth_list``).
        evaluate_at_depth: runs the accuracy evaluation with the model at the given depth
            and returns Detectron2's results (``{task: {metric: value}}``).
        cost_inputs: one test input (list of one dict, as the test loader yields) on which
            FLOPs and used parameters are counted.

    Returns:
        ``OrderedDict(depth -> {task: {metric: value}, "cost": {...}})``; cost holds
        ``gflops`` (the whole detector on ``cost_inputs``), ``backbone_gflops`` (the
        backbone, FPN included, on one 224x224 image), ``params_m`` (parameters used, millions), ``latency_ms`` (median per
        forward call over the evaluation run) and ``images`` (forward calls timed).
    """
    device = next(detector.parameters()).device
    results = OrderedDict()
    for index, depth in enumerate(depths, start=1):
        logger.info("Depth setting %s (%d/%d)", depth, index, len(depths))
        with ForwardTimer(detector) as timer:
            accuracy = evaluate_at_depth(depth)
        with using_depth(detector, depth):
            cost = model_cost(detector, cost_inputs)
            backbone = backbone_flops(detector.backbone, BACKBONE_COST_SIZE)
        results[depth] = OrderedDict(accuracy)
        results[depth]["cost"] = {
            "gflops": cost["flops"] / 1e9,
            "backbone_gflops": backbone / 1e9,
            "params_m": cost["params"] / 1e6,
            "latency_ms": timer.median_ms(),
            "images": len(timer.seconds),
        }
    logger.info("Latency measured on %s", device_name(device))
    return results
