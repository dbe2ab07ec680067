"""Deployment of an ADN detector at one depth setting.

* :mod:`.select`: choose the setting that fits a latency / GFLOPs / AP budget from a
  per-depth evaluation (``depth_eval.json``); ``tools/select_depth.py``.
* :mod:`.export`: TorchScript (tracing) and ONNX export at a fixed depth, with checks;
  ``tools/export_model.py`` (``tools/run_exported.py`` runs the result without adadet).
* :mod:`.predictor`: single-image inference at any depth, with latency.
* :mod:`.visualize`: predictions drawn with Detectron2's Visualizer, depths side by side;
  ``tools/demo.py``.
* :mod:`.cli_checks`: the tools' checks of their file arguments (exit status 2).

Import the submodule you need (``from adadet.deploy.select import select_depth``): this
package imports none of them, so choosing a depth does not load the exporters or matplotlib.
"""
