"""Tensor-in, tensor-out views of a Detectron2 model, for ``torch.jit.trace`` and ONNX.

Detectron2 models take ``list[dict]`` and return ``Instances``, which tracing cannot
record. :class:`DetectorTracingAdapter` takes one image tensor and returns the prediction
tensors, for the exporters and for fvcore's FLOP counting (``adadet.evaluation.cost``). It
plays the part of ``detectron2.export.TracingAdapter``, which v0.6 cannot import (its
``detectron2.export`` imports caffe2, removed from torch), so one code path serves v0.6 and
main.

Tracing runs Python once and records the tensor ops it executed. At a fixed depth the
skipped blocks never execute, so the traced graph holds only the blocks of that setting.
"""
import contextlib
import importlib
import warnings
from unittest import mock
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

# Detectron2 modules that call ``len(instances)`` on the inference path. Builtin ``len``
# must return a Python int, so a trace would bake the number of detections of the tracing
# image into the graph (e.g. ``split([20])`` in mask_rcnn_inference) and fail on any other
# image. ``obj.__len__()`` returns the traced size instead.
_LEN_CALLERS = (
    "detectron2.modeling.roi_heads.fast_rcnn",
    "detectron2.modeling.roi_heads.mask_head",
    "detectron2.modeling.roi_heads.keypoint_head",
)


def _traceable_len(obj):
    return obj.__len__()


@contextlib.contextmanager
def tracing_mode() -> Iterator[None]:
    """The block traces a Detectron2 model: no autograd; ``len(x)`` in Detectron2's ROI-head
    modules calls ``x.__len__()`` (a traced size for Boxes/Instances), so traced graphs work
    for any detection count; no TracerWarnings. (Detectron2's shape checks and asserts each
    raise one, "converting a tensor to a Python boolean...": expected and harmless here.
    That the graph is right for other inputs is checked on a second input size.)"""
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        stack.enter_context(torch.no_grad())
        for name in _LEN_CALLERS:
            module = importlib.import_module(name)
            stack.enter_context(mock.patch.object(module, "len", _traceable_len, create=True))
        yield


def output_names_of(model: nn.Module) -> List[str]:
    """Names of the tensors :class:`DetectorTracingAdapter` returns for ``model``."""
    masks = getattr(getattr(model, "roi_heads", None), "mask_on", False)  # RetinaNet: none
    return ["boxes", "scores", "classes"] + (["masks"] if masks else [])


class DetectorTracingAdapter(nn.Module):
    """``image (C, H, W) -> boxes (N, 4), scores (N,), classes (N,) [, masks (N, 1, M, M)]``.

    The image is in the model's input format (``INPUT.FORMAT``), 0-255, already resized
    as the test loader would (``ResizeShortestEdge``); normalisation and padding happen
    inside, as in the model. Boxes are in the coordinates of that input image.

    For R-CNN models the outputs are the network's raw predictions
    (``inference(do_postprocess=False)``): masks are the per-box M x M foreground
    probabilities, to be pasted into the box and thresholded at 0.5. (Detectron2's pasting
    loops over chunks of boxes, whose count a trace would freeze.) Other models
    (RetinaNet) go through their own postprocessing at the input size.

    ``extra_inputs`` (a dict, even empty: the other keys of one input, such as ``height``
    and ``width``) runs the model whole instead, as evaluation does: boxes rescaled and
    masks pasted at that size, which FLOP counting must include.
    """

    def __init__(self, model: nn.Module, extra_inputs: Optional[Mapping[str, Any]] = None):
        super().__init__()
        self.model = model
        self.output_names = output_names_of(model)
        self.extra_inputs = None if extra_inputs is None else dict(extra_inputs)
        # Exporters restore the wrapper's training flag on everything inside it afterwards:
        # a wrapper left in train mode would turn the detector back to training mode.
        self.eval()

    def _instances(self, image: torch.Tensor):
        inputs = [{"image": image, **(self.extra_inputs or {})}]
        raw = self.extra_inputs is None
        if raw and hasattr(self.model, "inference") and hasattr(self.model, "roi_heads"):
            (instances,) = self.model.inference(inputs, do_postprocess=False)
            return instances
        (output,) = self.model(inputs)
        return output["instances"]

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        instances = self._instances(image)
        outputs = [instances.pred_boxes.tensor, instances.scores, instances.pred_classes]
        if "masks" in self.output_names:
            outputs.append(instances.pred_masks)
        return tuple(outputs)


class BackboneTracingAdapter(nn.Module):
    """``image (C, H, W) -> FPN features`` (p2..p6) with the model's normalisation: the part
    of a detector that ONNX can take when the whole model cannot.

    H and W must be multiples of the backbone's ``size_divisibility`` (32 for FPN):
    Detectron2 pads inside the model with shape arithmetic that torch.export cannot
    follow, so here the caller pads, with :meth:`pad`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_names = list(model.backbone.output_shape().keys())
        self.size_divisibility = model.backbone.size_divisibility or 1
        self.eval()

    def pad(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` (C, H, W, 0-255) padded at the bottom and right to multiples of the
        size_divisibility with the pixel mean, which normalises to 0 as Detectron2's padding."""
        divisor = self.size_divisibility
        height, width = image.shape[-2:]
        padded_h, padded_w = -(-height // divisor) * divisor, -(-width // divisor) * divisor
        out = self.model.pixel_mean.to(image).reshape(-1, 1, 1).expand(-1, padded_h, padded_w).clone()
        out[:, :height, :width] = image
        return out

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        normalized = (image - self.model.pixel_mean) / self.model.pixel_std
        features: Dict[str, torch.Tensor] = self.model.backbone(normalized[None])
        return tuple(features[name] for name in self.output_names)
