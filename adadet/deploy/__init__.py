"""Deployment of an ADN detector at one depth setting.

* :mod:`.select`: choose the setting that fits a latency / GFLOPs / AP budget from a
  per-depth evaluation (``depth_eval.json``); ``tools/select_depth.py``.
* :mod:`.tracing`: tensor-in, tensor-out adapters of a Detectron2 model for tracing (the
  exporters, and FLOP counting in :mod:`adadet.evaluation.cost`).
* :mod:`.export`: TorchScript (tracing) and ONNX export at a fixed depth, with checks;
  ``tools/export_model.py`` (``tools/run_exported.py`` runs the result without adadet).
* :mod:`.predictor`: single-image inference at any depth, with latency.
* :mod:`.visualize`: predictions drawn with Detectron2's Visualizer, depths side by side;
  ``tools/demo.py``.
* :mod:`.cli_checks`: the tools' checks of their file arguments (exit status 2).

Submodules are imported on first use, so choosing a depth does not load the exporters
or matplotlib.
"""
import importlib

_EXPORTS = {
    "DepthBudget": "select", "DepthSelection": "select", "NoDepthFits": "select",
    "load_depth_table": "select", "select_depth": "select", "format_selection": "select",
    "DetectorTracingAdapter": "tracing", "BackboneTracingAdapter": "tracing",
    "tracing_friendly_len": "tracing",
    "ExportError": "export", "ExportReport": "export", "export_torchscript": "export",
    "export_onnx": "export", "script_model": "export", "TOLERANCES": "export",
    "AdaptiveDepthPredictor": "predictor", "DepthPrediction": "predictor",
    "build_inference_model": "predictor", "setup_deploy_cfg": "predictor",
    "draw_prediction": "visualize", "side_by_side": "visualize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
