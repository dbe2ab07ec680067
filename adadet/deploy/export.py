"""Export an ADN detector at one fixed depth setting to TorchScript (tracing) or ONNX.

Tracing at a fixed depth records only the blocks that setting runs; freezing the traced
module then drops the weights nothing in the graph reads (the skipped blocks, the norm
set not in use), so a "TTTT" file is smaller than an "FFFF" file. Each export is checked:

* the exported graph's conv and linear nodes are counted and must equal the conv and
  linear layer calls of the eager model at that depth (a skipped block in the graph would
  add some; a missing block remove some);
* the exported file, loaded back, must reproduce the eager model's predictions at that
  depth on real images within :data:`TOLERANCES` (same detections, boxes in pixels).

Scripting is not offered: see :func:`script_model`.
"""
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ..depth import depth_layout, using_depth
from ..modeling.adaptive_parts import config_depth_layout
from ..utils.tracing import BackboneTracingAdapter, DetectorTracingAdapter, tracing_mode

logger = logging.getLogger(__name__)

#: Name of the JSON metadata stored in the TorchScript archive (``_extra_files``) and as an
#: ONNX ``metadata_props`` key: depth, input format and size, output names, class names.
METADATA_NAME = "adadet_export.json"

#: Largest allowed |exported - eager| per output (boxes in input-image pixels; scores and
#: mask probabilities in [0, 1]); classes and the number of detections must be equal.
#: Measured on CPU: TorchScript 0 for ResNet-ADN (the same kernels as eager), boxes <= 3e-5
#: px for ViT-ADN (eager attention uses scaled_dot_product_attention, the traced graph
#: explicit matmuls); ONNX Runtime boxes <= 2e-5 px, scores and masks <= 1e-7.
TOLERANCES: Dict[str, Dict[str, float]] = {
    "torchscript": {"boxes": 1e-3, "scores": 1e-5, "masks": 1e-5, "features": 1e-4},
    "onnx": {"boxes": 1e-2, "scores": 1e-4, "masks": 1e-4, "features": 1e-3},
}

# The weighted layers counted in a graph and in an eager run: a block of a depth setting is
# in the graph exactly when its convs (ResNet) or linear layers (ViT) are.
_GRAPH_NODE_KINDS = {
    "conv": ("aten::_convolution", "aten::conv1d", "aten::conv2d", "aten::conv3d",
             "aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d"),
    "linear": ("aten::linear",),
}
_LAYER_MODULES = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d),
    "linear": (nn.Linear,),
}


class ExportError(RuntimeError):
    """The model cannot be exported the way asked; the message says why and what works."""


@dataclass
class ExportReport:
    """What an export produced and how it was checked (written as ``export_info.json``)."""

    format: str
    method: str
    depth: str
    path: str
    part: str = "model"  # "model" (the whole detector) or "backbone" (backbone + FPN)
    exporter: str = ""
    output_names: List[str] = field(default_factory=list)
    #: weighted layers in the exported graph, by kind ("conv", "linear"; ONNX: "conv" only)
    graph_layers: Dict[str, int] = field(default_factory=dict)
    #: the same layers called by the eager model at this depth on the sample image
    eager_layer_calls: Dict[str, int] = field(default_factory=dict)
    file_bytes: Optional[int] = None
    tolerance: Dict[str, float] = field(default_factory=dict)
    checks: List[Dict[str, Any]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def graph_matches_depth(self) -> bool:
        return all(self.eager_layer_calls.get(kind) == n for kind, n in self.graph_layers.items())

    @property
    def outputs_match(self) -> Optional[bool]:
        return all(check["ok"] for check in self.checks) if self.checks else None  # None: unchecked

    @property
    def ok(self) -> bool:
        return self.graph_matches_depth and self.outputs_match is not False

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "graph_matches_depth": self.graph_matches_depth,
                "outputs_match": self.outputs_match, "ok": self.ok}


# --------------------------------------------------------------------------- metadata


def export_metadata(cfg, depth: str, output_names: Sequence[str]) -> Dict[str, Any]:
    """What a runner needs besides the graph: how to prepare the input, what comes out."""
    import detectron2

    from .. import __version__ as adadet_version
    from .predictor import dataset_metadata

    thing_classes = list(dataset_metadata(cfg).get("thing_classes", []))
    return {
        "format_version": 1,
        "depth": config_depth_layout(cfg).normalize(depth),
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "input": {
            "format": cfg.INPUT.FORMAT,
            "layout": "CHW float32, 0-255, one image",
            "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
            "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
            "resize": "shortest edge to min_size_test, longest at most max_size_test, bilinear",
        },
        "outputs": list(output_names),
        "masks": "per-box MxM foreground probabilities: resize to the box, threshold 0.5"
        if "masks" in output_names else None,
        "score_threshold": float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
        if cfg.MODEL.META_ARCHITECTURE != "RetinaNet" else float(cfg.MODEL.RETINANET.SCORE_THRESH_TEST),
        "thing_classes": thing_classes,
        "weights": cfg.MODEL.WEIGHTS,
        "versions": {"adadet": adadet_version, "detectron2": detectron2.__version__,
                     "torch": torch.__version__},
    }


# --------------------------------------------------------------------------- checks


def count_layer_calls(model: nn.Module, run: Callable[[], Any]) -> Dict[str, int]:
    """How many conv and linear layers ``run()`` calls, by kind."""
    calls = dict.fromkeys(_LAYER_MODULES, 0)

    def count(module, args, output):
        for kind, types in _LAYER_MODULES.items():
            calls[kind] += isinstance(module, types)

    counted = tuple(t for types in _LAYER_MODULES.values() for t in types)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _graph_nodes(block):
    """Every node of a TorchScript graph or block, those of nested blocks included."""
    for node in block.nodes():
        yield node
        for sub in node.blocks():
            yield from _graph_nodes(sub)


def count_graph_layers(graph) -> Dict[str, int]:
    """Conv and linear nodes of a TorchScript graph (nested blocks included), by kind."""
    counts = dict.fromkeys(_GRAPH_NODE_KINDS, 0)
    for node in _graph_nodes(graph):
        for kind, node_kinds in _GRAPH_NODE_KINDS.items():
            counts[kind] += node.kind() in node_kinds
    return counts


def graph_op_libraries(graph) -> List[str]:
    """Operator namespaces besides aten/prim the graph calls (e.g. ``torchvision``: its
    nms and roi_align), which the runtime must load (``import torchvision``)."""
    return sorted(
        {n.kind() for n in _graph_nodes(graph) if n.kind().split("::")[0] not in ("aten", "prim", "onnx")}
    )


def _onnx_conv_nodes(graph) -> int:
    """Conv nodes of an ONNX graph, subgraphs included (linear layers become Gemm or MatMul,
    and so do attention products: they are not counted)."""
    import onnx

    total = 0
    for node in graph.node:
        total += node.op_type in ("Conv", "ConvTranspose")
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                total += _onnx_conv_nodes(attribute.g)
    return total


def compare_outputs(
    expected: Sequence[torch.Tensor],
    actual: Sequence[torch.Tensor],
    names: Sequence[str],
    tolerance: Dict[str, float],
) -> Dict[str, Any]:
    """Max |actual - expected| per output, and whether all are within ``tolerance``
    (outputs not in it, e.g. classes, must be equal; shapes must match)."""
    result: Dict[str, Any] = {"detections": {"eager": None, "exported": None}, "max_abs_diff": {}}
    ok = True
    for name, want, got in zip(names, expected, actual):
        if name == "boxes":
            result["detections"] = {"eager": int(want.shape[0]), "exported": int(got.shape[0])}
        if tuple(want.shape) != tuple(got.shape):
            result["max_abs_diff"][name] = f"shape {tuple(got.shape)} != eager {tuple(want.shape)}"
            ok = False
            continue
        diff = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
        result["max_abs_diff"][name] = diff
        limit = tolerance.get("features" if name not in tolerance and want.is_floating_point()
                              else name, 0.0)
        ok = ok and diff <= limit
    result["ok"] = ok
    return result


def _check(report: ExportReport, adapter, images, run_exported=None) -> None:
    """Fills in ``report``: the file's size, the layer calls of the eager model at the
    report's depth on ``images[0]`` and, given ``run_exported``, the exported outputs
    against the eager ones on each image."""
    report.file_bytes = os.path.getsize(report.path)
    with torch.no_grad(), using_depth(adapter.model, report.depth):
        report.eager_layer_calls = count_layer_calls(adapter.model, lambda: adapter(images[0]))
        for index, image in enumerate(images if run_exported else ()):
            eager = tuple(t.cpu() for t in adapter(image))
            check = compare_outputs(eager, run_exported(image), report.output_names, report.tolerance)
            report.checks.append({**check, "image": index, "input_size": list(image.shape[-2:])})


# --------------------------------------------------------------------------- TorchScript


def trace_at_depth(adapter: nn.Module, depth: str, image: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace ``adapter`` with its model at ``depth``; frozen, so unused weights are dropped."""
    with using_depth(adapter.model, depth), tracing_mode():
        traced = torch.jit.trace(adapter, (image,), check_trace=False)
        # Frozen inside the block: the trace shares the model's buffers, and leaving the
        # depth copies other BN statistics into them (per-depth statistics).
        # optimize_numerics=False: no conv-BN folding, so results stay the eager model's.
        return torch.jit.freeze(traced.eval(), optimize_numerics=False)


def export_torchscript(
    model: nn.Module,
    depth: str,
    image: torch.Tensor,
    path: str,
    metadata: Optional[Dict[str, Any]] = None,
    check_images: Sequence[torch.Tensor] = (),
    verify: bool = True,
) -> ExportReport:
    """Trace ``model`` at ``depth`` on ``image`` (the model's input tensor), save it to
    ``path`` with ``metadata`` inside, load it back and check it on ``image`` and
    ``check_images`` (``verify=False``: count the layers only)."""
    depth = depth_layout(model).normalize(depth)
    adapter = DetectorTracingAdapter(model)
    exported = trace_at_depth(adapter, depth, image)
    metadata = {**(metadata or {}), "requires_ops": graph_op_libraries(exported.graph)}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.jit.save(exported, path, _extra_files={METADATA_NAME: json.dumps(metadata, indent=2)})

    loaded = torch.jit.load(path, map_location="cpu")
    report = ExportReport(
        format="torchscript", method="tracing", depth=depth, path=path, exporter="torch.jit.trace",
        output_names=list(adapter.output_names), tolerance=TOLERANCES["torchscript"],
        graph_layers=count_graph_layers(loaded.graph),
    )

    def run_loaded(x):
        return tuple(t.cpu() for t in loaded(x.cpu()))

    _check(report, adapter, [image, *check_images], run_loaded if verify else None)
    return report


def script_model(model: nn.Module):
    """Scripting is not available for ADN models; raises :class:`ExportError` saying why.

    Not even attempted: on detectron2 main, a failed ``scripting_with_instances`` call
    changed the later predictions of the same model object (found by the deployment tests).
    (On detectron2 v0.6, ``detectron2.export`` cannot even be imported: it imports caffe2.)
    """
    raise ExportError(
        f"--export-method scripting is not available for {type(model).__name__} with an "
        "ADN backbone: the backbone's depth switch is a Python object (SkipSwitch) shared by "
        "each stage and its switchable-norm convs, which call super().forward(); TorchScript "
        "compiles neither. A scripted model would also keep the blocks of all 16 depth "
        "settings instead of one fixed sub-net. Use --export-method tracing, which gives a "
        "graph with only the chosen setting's blocks."
    )


# --------------------------------------------------------------------------- ONNX


def _onnx_export_once(adapter, image, path, exporter: str, opset: int) -> None:
    names = list(adapter.output_names)
    with tracing_mode():
        if exporter == "torchscript":
            dynamic_axes = {"image": {1: "height", 2: "width"}}
            if isinstance(adapter, DetectorTracingAdapter):
                dynamic_axes.update({name: {0: "detections"} for name in names})
            torch.onnx.export(
                adapter, (image,), path, dynamo=False, opset_version=opset,
                input_names=["image"], output_names=names, dynamic_axes=dynamic_axes,
            )
        else:
            program = torch.onnx.export(adapter, (image,), dynamo=True, input_names=["image"],
                                        output_names=names)
            program.save(path)


def _error_summary(error: Exception) -> str:
    """One line from an exporter's (often very long) error: its root cause if it names one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines if line.startswith("<class ")]  # torch.export's summary
    cause = causes[0] if causes else (lines[0] if lines else "")
    return f"{type(error).__name__}: {cause[:300]}"


def export_onnx(
    model: nn.Module,
    depth: str,
    image: torch.Tensor,
    path: str,
    metadata: Optional[Dict[str, Any]] = None,
    check_images: Sequence[torch.Tensor] = (),
    exporters: Sequence[str] = ("torchscript", "dynamo"),
    opset: int = 17,
) -> ExportReport:
    """Export to ONNX at ``depth``: the whole detector if an exporter can take it, else the
    backbone + FPN (``report.part`` says which; ``report.notes`` why).

    Exporters are tried in order: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``,
    which traces, with dynamic image size and detection count) then ``"dynamo"``
    (``torch.export``, static input shape). The file is checked with onnxruntime when it
    is installed.
    """
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs the 'onnx' package (torch.onnx serialises through it), which "
            "is not installed: pip install onnx (and onnxscript for the dynamo exporter, "
            "onnxruntime to check the exported file)."
        ) from None
    depth = depth_layout(model).normalize(depth)
    failures: List[str] = []
    for part, adapter in (("model", DetectorTracingAdapter(model)),
                          ("backbone", BackboneTracingAdapter(model))):
        images = [image, *check_images]
        if part == "backbone":  # its input must come padded (see BackboneTracingAdapter)
            images = [adapter.pad(x) for x in images]
        for exporter in exporters:
            try:
                with using_depth(model, depth):
                    _onnx_export_once(adapter, images[0], path, exporter, opset)
            except Exception as e:  # any failure: record it and try the next way
                failures.append(f"{part} with the {exporter} exporter failed: {_error_summary(e)}")
                logger.info(failures[-1])
                continue
            report = ExportReport(
                format="onnx", method="tracing" if exporter == "torchscript" else "torch.export",
                depth=depth, path=path, part=part,
                exporter=f"torch.onnx.export(dynamo=False), opset {opset}"
                if exporter == "torchscript" else "torch.onnx.export(dynamo=True)",
                output_names=list(adapter.output_names), tolerance=TOLERANCES["onnx"],
                notes=list(failures),
            )
            if part == "backbone":
                report.notes.append(
                    "Only the backbone + FPN was exported to ONNX (image -> "
                    f"{', '.join(adapter.output_names)}): no exporter took the whole detector; "
                    "run the RPN and ROI heads outside, or use --format torchscript. Its input "
                    f"must be padded to multiples of {adapter.size_divisibility} with the pixel mean."
                )
            if exporter == "dynamo":  # a static input shape: checked on the sample only
                report.notes.append("dynamo export: the image size is fixed to the sample's.")
                images = images[:1]
            proto = onnx.load(path)
            meta = {**(metadata or {}), "part": part, "outputs": report.output_names}
            proto.metadata_props.add(key=METADATA_NAME, value=json.dumps(meta, indent=2))
            onnx.save(proto, path)
            report.graph_layers = {"conv": _onnx_conv_nodes(proto.graph)}
            _check(report, adapter, images, _onnxruntime_runner(report))
            return report
    raise ExportError("ONNX export failed in every way tried:\n  " + "\n  ".join(failures))


def _onnxruntime_runner(report: ExportReport) -> Optional[Callable]:
    """The exported file run by onnxruntime; None (and a note saying so) without it."""
    try:
        import onnxruntime
    except ImportError:
        report.notes.append("Outputs not checked: onnxruntime is not installed (pip install onnxruntime).")
        return None
    session = onnxruntime.InferenceSession(report.path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: tuple(torch.from_numpy(o) for o in session.run(None, {input_name: x.cpu().numpy()}))
