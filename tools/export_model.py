#!/usr/bin/env python
"""Export an ADN detector at one depth setting (Detectron2's tools/deploy/export_model.py
conventions). The exported graph holds only the blocks of that setting.

    tools/export_model.py --config-file configs/mask_rcnn_ada_r18_embedded_cpu.yaml \
        --depth TTTT --format torchscript --output output/export_TTTT MODEL.WEIGHTS model.pth
    tools/export_model.py ... --format onnx --output output/export_TTTT_onnx
    tools/run_exported.py output/export_TTTT/model.ts --input image.jpg

Writes ``OUTPUT/model.ts`` or ``OUTPUT/model.onnx`` (metadata inside: depth, input format
and test size, output names, class names) and ``OUTPUT/export_info.json`` (conv nodes of
the graph vs conv calls of the eager model at that depth, output differences measured on
the sample images).

Exit status: 0 exported and checked; 1 the exported model failed a check, and nothing
else; 2 a bad argument or input (an --output that cannot be written, a --sample-image that
is missing, empty or no image, a --depth that is not one of the model's settings, a bad
override, a bad checkpoint or no sample image in the config). The
arguments are checked before the model is built.

--export-method scripting is refused with the reason (adadet.deploy.export.script_model).
--sample-image: the image traced and checked on (default: the first image of
DATASETS.TEST[0]); it is also checked at 3/4 size, to show the graph is not tied to one size.
"""
import argparse
import json
import logging
import os
import sys

import torch
from detectron2.utils.logger import setup_logger

from adadet import get_depth, using_depth
from adadet.checkpoint import CheckpointError
from adadet.deploy.cli_checks import ArgumentChecks
from adadet.deploy.export import (
    ExportError,
    count_layer_calls,
    export_metadata,
    export_onnx,
    export_torchscript,
    script_model,
)
from adadet.deploy.predictor import build_inference_model, read_model_input, setup_deploy_cfg
from adadet.utils.tracing import DetectorTracingAdapter, output_names_of
from adadet.utils.command_line import check_overrides, depth_argument


# Exit status 2 with "error:" for a bad argument; 1 stays the status of a failed check.
CHECKS = ArgumentChecks("[export_model] error: ")
SAMPLE_IMAGE_FIX = ("give an image file (JPEG, PNG, ...) or leave --sample-image out to use "
                    "DATASETS.TEST[0]")


def check_output_dir(path: str) -> None:
    """``path`` is, or can be made, a directory this process can write files into."""
    if os.path.exists(path) and not os.path.isdir(path):
        CHECKS.fail(f"--output {path} is a file: give a directory (model.ts and export_info.json "
                    "are written into it).")
    CHECKS.writable_directory(path, "--output {path} cannot be written to ({reason}): choose a "
                                    "directory in a writable place.")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Exit status:"):].split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    parser.add_argument("--export-method", choices=["tracing", "scripting"], default="tracing")
    parser.add_argument("--depth", default=None, type=depth_argument,
                        help="depth setting to export, e.g. TTFF (default: MODEL.ADN.DEPTH)")
    parser.add_argument("--sample-image", default=None, metavar="FILE",
                        help="image to trace and check on (default: first of DATASETS.TEST[0])")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE pairs, e.g. MODEL.WEIGHTS model.pth")
    args = parser.parse_args(argv)
    check_overrides(parser, args.opts)
    return args


def sample_image_path(cfg, given):
    if given:
        return given
    from detectron2.data import DatasetCatalog

    if not len(cfg.DATASETS.TEST):
        CHECKS.fail("No DATASETS.TEST in the config: give --sample-image.")
    name = cfg.DATASETS.TEST[0]
    try:
        return DatasetCatalog.get(name)[0]["file_name"]
    except Exception as e:
        CHECKS.fail(f"Cannot read a sample image from {name} ({e}): give --sample-image.")


def smaller_copy(image: torch.Tensor) -> torch.Tensor:
    """The image at 3/4 size: another input shape (and detection count) to check on."""
    height, width = image.shape[-2:]
    size = (max(32, height * 3 // 4), max(32, width * 3 // 4))
    return torch.nn.functional.interpolate(image[None], size=size, mode="bilinear",
                                           align_corners=False)[0].round().clamp(0, 255)


def layers_text(counts, kinds=None):
    return " + ".join(f"{counts[k]} {k}" for k in (kinds or counts))


def summary_lines(report, super_calls=None):
    lines = [f"Exported {report.part} at depth {report.depth}: {report.path} "
             f"({report.file_bytes / 1e6:.1f} MB, {report.exporter})"]
    lines.append(f"  outputs: {', '.join(report.output_names)}")
    verdict = "matches" if report.graph_matches_depth else "DOES NOT MATCH"
    lines.append(f"  graph: {layers_text(report.graph_layers)} nodes, {verdict} the "
                 f"{layers_text(report.eager_layer_calls, report.graph_layers)} layer calls of "
                 f"the eager model at {report.depth}")
    if super_calls is not None:
        skipped = sum(super_calls[k] - report.eager_layer_calls[k] for k in report.graph_layers)
        lines.append(f"  the super-net FFFF calls {layers_text(super_calls, report.graph_layers)}: "
                     f"{skipped} layers of skipped blocks are not in the graph")
    for check in report.checks:
        diffs = ", ".join(f"{k} {v:.2e}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in check["max_abs_diff"].items())
        det = check["detections"]
        counts = (f"detections eager {det['eager']} / exported {det['exported']}; "
                  if det["eager"] is not None else "")
        lines.append(
            f"  check on input {check['input_size'][0]}x{check['input_size'][1]}: "
            f"{'OK' if check['ok'] else 'FAILED'}; {counts}max |diff|: {diffs}")
    if report.checks:
        lines.append("  tolerance: " + ", ".join(f"{k} {v:g}" for k, v in report.tolerance.items())
                     + " (classes and detection count exact)")
    for note in report.notes:
        lines.append(f"  note: {note}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    check_output_dir(args.output)
    if args.sample_image:
        CHECKS.image_file(args.sample_image, "--sample-image", SAMPLE_IMAGE_FIX)
    setup_logger(name="adadet")
    logger = logging.getLogger("adadet")
    try:
        cfg = setup_deploy_cfg(args.config_file, args.opts, depth=args.depth)
    except (TypeError, ValueError) as e:  # a bad setting or override: a bad argument (exit 2)
        CHECKS.fail(str(e))
    try:
        model = build_inference_model(cfg)
    except CheckpointError as e:
        print(f"[export_model] {e}", file=sys.stderr)
        return 2
    depth = get_depth(model)  # MODEL.ADN.DEPTH, or --depth

    if args.export_method == "scripting":
        try:
            script_model(model)  # always refuses, with the reason
        except ExportError as e:
            print(f"[export_model] {e}", file=sys.stderr)
        return 2

    image_path = sample_image_path(cfg, args.sample_image)
    image = read_model_input(image_path, cfg)
    logger.info("Sample image %s -> model input %s", image_path, tuple(image.shape))
    metadata = export_metadata(cfg, depth, output_names_of(model))
    metadata["sample_image"] = image_path
    os.makedirs(args.output, exist_ok=True)
    try:
        if args.format == "torchscript":
            report = export_torchscript(model, depth, image, os.path.join(args.output, "model.ts"),
                                        metadata, check_images=[smaller_copy(image)])
        else:
            report = export_onnx(model, depth, image, os.path.join(args.output, "model.onnx"),
                                 metadata, check_images=[smaller_copy(image)])
    except ExportError as e:
        print(f"[export_model] {e}", file=sys.stderr)
        return 2

    super_calls = None
    if report.part == "model" and depth != "FFFF":
        adapter = DetectorTracingAdapter(model)
        with using_depth(model, "FFFF"):
            super_calls = count_layer_calls(model, lambda: adapter(image))
    info = report.to_dict()
    info["super_net_layer_calls"] = super_calls
    with open(os.path.join(args.output, "export_info.json"), "w") as f:
        json.dump(info, f, indent=2)
    print("\n".join(summary_lines(report, super_calls)))
    if not report.ok:
        print("[export_model] the exported model failed a check (see above).", file=sys.stderr)
        if report.checks and report.checks[0]["ok"] and not report.outputs_match:
            print("[export_model] It is exact on the sample image but not at another input size: "
                  "tracing froze a size-dependent Python number in the model's code (detectron2 "
                  "v0.6's RetinaNet does: min(topk, candidates)). Feed it inputs of the sample's "
                  "size only, or export with a detectron2 that traces this model generically "
                  "(main does).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
