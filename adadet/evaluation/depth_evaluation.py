"""Evaluate one detector at several depth settings: accuracy, FLOPs, parameters, latency.

:func:`evaluate_depths` is the per-depth evaluation of both config systems
(``ADNTrainer.test`` and ``lazy_test``): at each depth setting, Detectron2's
``inference_on_dataset`` on every test loader while a timer records the latency of every
forward call; the cost (FLOPs and used parameters of the whole detector) is counted on the
first test image at its evaluated size; then, on the main process, the table and the
report files.

Results are nested ``{depth: {task: {metric: value}}, "cost": {...}}`` so that Detectron2's
EvalHook flattens them into scalars like ``TTFF/bbox/AP`` for metrics.json and TensorBoard.
"""
import logging
from collections import OrderedDict
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence

import torch
import torch.nn as nn
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..depth import depth_layout, using_depth
from ..utils.timing import ForwardTimer
from .cost import backbone_flops, model_cost
from .depth_report import report_depth_results

#: The backbone's FLOPs are counted on one image of this size (the protocol of ImageNet
#: tables): unlike the whole detector's, they do not follow the number of detections.
BACKBONE_COST_SIZE = (224, 224)

logger = logging.getLogger(__name__)


def checked_test_depths(model: nn.Module, depths: Sequence[str], key: str) -> List[str]:
    """The depth settings ``depths`` (the config key ``key``: ``TEST.ADN.DEPTHS``,
    ``adn.test_depths``) canonical for ``model``; a bad entry raises ValueError naming the
    key, so that a bad list fails before training, not after it."""
    try:
        return depth_layout(model).expand(list(depths))
    except ValueError as e:
        raise ValueError(f"{key} {list(depths)}: {e}") from None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def evaluate_depths(
    detector: nn.Module,
    depths: Sequence[str],
    loaders: Mapping[str, Iterable],
    evaluator_for: Callable[[str, str], DatasetEvaluator],
    output_dir: str,
) -> "OrderedDict[str, Dict[str, Any]]":
    """Evaluate ``detector`` at each of ``depths`` on each test dataset.

    Args:
        detector: the bare Detectron2 model (not DDP-wrapped).
        depths: canonical depth settings (``adadet.expand_depth_list``).
        loaders: test loaders by dataset name, built once and reused at every depth.
        evaluator_for: ``(dataset name, depth) -> DatasetEvaluator`` (reset by
            ``inference_on_dataset`` before use, so one evaluator may serve every depth).
        output_dir: where the main process writes ``depth_eval.{json,csv}`` and
            ``depth_eval_pareto.png`` (of the first dataset).

    Returns:
        ``OrderedDict(depth -> {task: {metric: value}, "cost": {...}})``, with one level
        ``{dataset: {task: ...}}`` more for several datasets (as Detectron2's
        ``DefaultTrainer.test``); cost holds ``gflops`` (the whole detector on the first
        test image), ``backbone_gflops`` (the backbone, FPN included, on one 224x224
        image), ``params_m`` (parameters used, millions), ``latency_ms`` (median per
        forward call over the evaluation) and ``images`` (forward calls timed).
    """
    device = device_name(next(detector.parameters()).device)
    names = list(loaders)
    cost_inputs = next(iter(loaders[names[0]]))
    main = comm.is_main_process()
    results = OrderedDict()
    for index, depth in enumerate(depths, start=1):
        logger.info("Evaluating at depth %s (%d/%d)", depth, index, len(depths))
        accuracy = OrderedDict()
        with using_depth(detector, depth), ForwardTimer(detector) as timer:
            for name in names:
                accuracy[name] = inference_on_dataset(
                    detector, loaders[name], evaluator_for(name, depth)
                )
                if main:
                    logger.info("Evaluation results for %s at depth %s in csv format:", name, depth)
                    print_csv_format(accuracy[name])
        with using_depth(detector, depth):
            cost = model_cost(detector, cost_inputs)
            backbone = backbone_flops(detector.backbone, BACKBONE_COST_SIZE)
        results[depth] = OrderedDict(accuracy[names[0]] if len(names) == 1 else accuracy)
        results[depth]["cost"] = {
            "gflops": cost["flops"] / 1e9,
            "gflops_by_part": {part: flops / 1e9 for part, flops in cost["parts"].items()},
            "backbone_gflops": backbone / 1e9,
            "params_m": cost["params"] / 1e6,
            "latency_ms": timer.median_ms(),
            "images": len(timer.seconds),
        }
    logger.info("Latency measured on %s", device)
    if main:
        first_dataset = OrderedDict(
            (depth, per_depth if len(names) == 1 else {**per_depth[names[0]], "cost": per_depth["cost"]})
            for depth, per_depth in results.items()
        )
        report_depth_results(first_dataset, output_dir, device=device, dataset=names[0])
    return results
