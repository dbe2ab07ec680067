"""Which feature maps of a detector self-distillation can compare, and capturing them.

Two kinds, named in ``MODEL.ADN.DISTILL.FEATURES``:

* the backbone's outputs (``detector.backbone(...)``): the FPN levels ``p2``..``p6``
  (RetinaNet ``p3``..``p7``), what the neck and heads read;
* the adaptive bottom-up's stage outputs: ``res2``..``res5`` of ResNet-ADN, ``group1``..
  ``group4`` of ViT-ADN, where the skippable sub-paths act (the authors' ImageNet
  distillation uses these, globally pooled).

Both are recorded with forward hooks while a pass runs, so the model is unchanged.
"""
import contextlib
from typing import Dict, Iterator, List, Sequence

import torch
import torch.nn as nn

from ..depth import backbone_modules

__all__ = [
    "capture_backbone_features",
    "capture_features",
    "distillable_features",
    "stage_output_names",
]


def _stage_modules(detector: nn.Module) -> Dict[str, nn.Module]:
    modules: Dict[str, nn.Module] = {}
    for adaptive in backbone_modules(detector):
        modules.update(adaptive.stage_outputs())
    return modules


def stage_output_names(detector: nn.Module) -> List[str]:
    """The adaptive stages' output names (``res2``..``res5``, ``group1``..``group4``): what
    adadet distills by default."""
    return list(_stage_modules(detector))


def distillable_features(detector: nn.Module) -> List[str]:
    """The names ``MODEL.ADN.DISTILL.FEATURES`` may use for ``detector``: its backbone's
    outputs, then its stages' outputs."""
    backbone = getattr(detector, "backbone", None)
    if backbone is None:
        raise AttributeError(
            f"{type(detector).__name__} has no `backbone`; self-distillation needs a "
            "meta-architecture with one (GeneralizedRCNN, RetinaNet)."
        )
    outputs = list(backbone.output_shape()) if hasattr(backbone, "output_shape") else []
    return outputs + [name for name in stage_output_names(detector) if name not in outputs]


@contextlib.contextmanager
def capture_features(detector: nn.Module, names: Sequence[str]) -> Iterator[Dict[str, list]]:
    """Record the named feature maps while the block runs: yields ``{name: [tensor per
    call]}``. Backbone outputs are taken from the backbone's return value, stage outputs
    from their modules' (hooks removed on exit)."""
    stages = _stage_modules(detector)
    record: Dict[str, List[torch.Tensor]] = {name: [] for name in names}
    handles = []

    def on_backbone(module, inputs, output):
        for name in names:
            if name in output and name not in stages:
                record[name].append(output[name])

    def on_stage(name):
        return lambda module, inputs, output: record[name].append(output)

    try:
        if any(name not in stages for name in names):
            handles.append(detector.backbone.register_forward_hook(on_backbone))
        for name in names:
            if name in stages:
                handles.append(stages[name].register_forward_hook(on_stage(name)))
        yield record
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture_backbone_features(detector: nn.Module):
    """Record what ``detector.backbone`` returns while the block runs (a forward hook,
    removed on exit): a list with one dict of features per backbone call."""
    backbone = getattr(detector, "backbone", None)
    if backbone is None:
        raise AttributeError(
            f"{type(detector).__name__} has no `backbone`; self-distillation needs a "
            "meta-architecture with one (GeneralizedRCNN, RetinaNet)."
        )
    calls: List[Dict[str, torch.Tensor]] = []
    handle = backbone.register_forward_hook(lambda module, inputs, output: calls.append(output))
    try:
        yield calls
    finally:
        handle.remove()
