#!/usr/bin/env python
"""How far each stage's output moves when its skippable sub-path is skipped.

    tools/analyze_features.py --config-file configs/mask_rcnn_ada_r18_polygons_cpu.yaml \\
        --images 20 --output output/features MODEL.WEIGHTS output/study/fpn/seed0/model_final.pth

For each stage, on the first ``--images`` images of the config's first DATASETS.TEST, the
stage output of the super-net against the same stage when it alone skips (and in the
base-net): KL of the channel softmaxes, cosine similarity, relative L2 change. Prints a
table, writes ``features.json`` and ``features.png`` to ``--output``.
"""
import argparse
import itertools
import json
import os
import sys

import adadet  # noqa: F401  (registers the ADN backbones)
import adadet.data  # noqa: F401  (registers the embedded datasets)
from adadet.deploy.predictor import build_inference_model, setup_deploy_cfg
from adadet.evaluation.feature_analysis import format_refinement_table, stage_refinement
from adadet.utils.command_line import check_overrides


def plot(rows, path, title):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(figure)
    for axis, key, label in zip(figure.subplots(1, 3), ("kl", "cosine", "relative_l2"),
                                ("KL(full || skipped)", "cosine similarity", "relative L2 change")):
        x = range(len(rows))
        axis.bar([i - 0.2 for i in x], [r[key] for r in rows], 0.4, label="stage skipped alone")
        axis.bar([i + 0.2 for i in x], [r[f"base_{key}"] for r in rows], 0.4, label="base-net")
        axis.set_xticks(list(x), [r["stage"] for r in rows])
        axis.set_title(label, fontsize=9)
        axis.grid(alpha=0.3, axis="y")
    figure.axes[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--images", type=int, default=20, help="test images to average over")
    parser.add_argument("--output", default="output/features")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    check_overrides(parser, args.opts)
    if args.images < 1:
        parser.error(f"--images must be >= 1, got {args.images}")
    cfg = setup_deploy_cfg(args.config_file, args.opts)
    model = build_inference_model(cfg)
    from detectron2.data import build_detection_test_loader

    if not cfg.DATASETS.TEST:
        parser.error("the config has no DATASETS.TEST to take images from")
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    batches = list(itertools.islice(iter(loader), args.images))
    rows = stage_refinement(model, batches)
    print(format_refinement_table(rows))
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "features.json"), "w") as f:
        json.dump({"weights": cfg.MODEL.WEIGHTS, "images": len(batches),
                   "dataset": cfg.DATASETS.TEST[0], "stages": rows}, f, indent=1)
    plot(rows, os.path.join(args.output, "features.png"),
         f"{os.path.basename(cfg.MODEL.WEIGHTS) or 'random init'} on {len(batches)} images of "
         f"{cfg.DATASETS.TEST[0]}")
    print(f"Written: {args.output}/features.json, {args.output}/features.png")


if __name__ == "__main__":
    sys.exit(main())
