#!/usr/bin/env python
"""Draw an ADN detector's predictions on images, at one depth or several side by side
(the shape of Detectron2's demo/demo.py, images only).

    tools/demo.py --config-file configs/mask_rcnn_ada_r18_embedded_cpu.yaml \
        --input "images/*.jpg" --output out/ --depth TTTT --opts MODEL.WEIGHTS model.pth
    tools/demo.py --config-file ... --input image.jpg --output compare.jpg \
        --compare-depths FFFF TTFF TTTT --opts MODEL.WEIGHTS model.pth

--compare-depths writes one image per input: a panel per depth, left to right, each
captioned with the depth, its number of detections and its latency (median of --repeat
model calls, after --warmup untimed calls; resizing excluded). Class names come from the
metadata of cfg.DATASETS.TEST[0]. Webcam and video input are not supported.

Inputs that are directories or empty files, an --output whose extension OpenCV cannot
write, or an output folder that cannot be written to are refused before the model is
built; a drawn image that cannot be saved stops the run. All of these exit with status 2.
"""
import argparse
import glob
import os
import sys

import cv2
import numpy as np
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

from adadet.depth import depth_layout
from adadet.deploy.cli_checks import ArgumentChecks
from adadet.deploy.predictor import AdaptiveDepthPredictor, setup_deploy_cfg
from adadet.deploy.visualize import compare_depths, draw_prediction
from adadet.utils.command_line import (
    check_depth_list,
    check_overrides,
    depth_argument,
    depth_list_argument,
)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files or glob patterns, e.g. 'directory/*.jpg'")
    parser.add_argument("--output", default=None,
                        help="a file or directory to save the drawn images to "
                             "(a directory when there are several inputs)")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="minimum score for instances to be shown")
    parser.add_argument("--depth", default=None, type=depth_argument,
                        help="depth setting to run, e.g. TTFF (default: MODEL.ADN.DEPTH)")
    parser.add_argument("--compare-depths", nargs="+", default=None, metavar="DEPTH",
                        type=depth_list_argument,
                        help="draw each image at these settings side by side, e.g. FFFF TTTT "
                             "('all' for the 16)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="model calls timed per image and depth (the median is shown)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed model calls before the first timed one")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER,
                        help="config overrides, 'KEY VALUE' pairs")
    return parser


def setup_cfg(args):
    try:
        cfg = setup_deploy_cfg(args.config_file, args.opts, depth=args.depth)
    except (TypeError, ValueError) as e:  # a bad setting or override: a bad argument (exit 2)
        CHECKS.fail(str(e))
    cfg.defrost()
    # As Detectron2's demo: one threshold for every kind of model.
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = args.confidence_threshold
    cfg.freeze()
    return cfg


CHECKS = ArgumentChecks("demo.py: error: ")


def expand_inputs(patterns):
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            CHECKS.fail(f"--input {pattern!r} matches no file.")
        for path in matches:
            pattern_here = os.path.join(path, "*.jpg")
            directory_fix = (f"give image files, or a pattern such as {pattern_here!r} (quoted, "
                             "so that the shell passes it on)")
            CHECKS.readable_file(path, "--input", "it is no image; copy it again or leave it out",
                                 fixes={"is a directory": directory_fix})
        paths.extend(matches)
    return paths


def check_outputs(args, paths):
    """Refuse, before the model is built, outputs that OpenCV could not write."""
    targets = [output_path(args, path, len(paths), create=False) for path in paths]
    for target in targets:
        if target is not None and not cv2.haveImageWriter(target):
            given = "" if target == args.output else f" (from --output {args.output})"
            CHECKS.fail(f"--output {target!r}{given} has no image extension OpenCV can write: "
                        "give a file ending in .jpg or .png, or a directory (ending in '/') for "
                        "several inputs.")
    for directory in sorted({os.path.dirname(os.path.abspath(t)) for t in targets if t}):
        CHECKS.writable_directory(directory, "cannot write to {path} ({reason}): choose an "
                                             "--output in a writable place.")


def output_path(args, path, count, create=True):
    if args.output is None:
        return None
    if os.path.isdir(args.output) or count > 1 or args.output.endswith(os.sep):
        if create:
            os.makedirs(args.output, exist_ok=True)
        return os.path.join(args.output, os.path.basename(path))
    if create:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    return args.output


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    check_overrides(parser, args.opts)
    check_depth_list(parser, "--compare-depths", args.compare_depths)
    setup_logger(name="fvcore")
    logger = setup_logger(name="adadet")
    logger.info("Arguments: %s", args)
    paths = expand_inputs(args.input)
    check_outputs(args, paths)
    cfg = setup_cfg(args)
    predictor = AdaptiveDepthPredictor(cfg, repeat=args.repeat, warmup=args.warmup)
    depths = None
    try:  # the model's own settings: 7 letters where its neck and heads adapt too
        if args.compare_depths:
            depths = depth_layout(predictor.model).expand(args.compare_depths)
    except ValueError as e:
        CHECKS.fail(f"--compare-depths: {e}")

    for path in paths:
        try:
            image = read_image(path, format="BGR")  # as Detectron2's demo; the predictor converts
        except OSError as e:
            CHECKS.fail(f"--input {path} could not be read as an image ({type(e).__name__}: {e}).")
        if depths:
            drawn, predictions = compare_depths(predictor, image, depths)
            summary = "; ".join(
                f"{p.depth}: {len(p.instances)} instances in {p.latency_ms:.1f} ms" for p in predictions
            )
        else:
            prediction = predictor(image)
            drawn = draw_prediction(np.ascontiguousarray(image[:, :, ::-1]), prediction,
                                    predictor.metadata)
            summary = (f"{prediction.depth}: {len(prediction.instances)} instances in "
                       f"{prediction.latency_ms:.1f} ms")
        logger.info("%s: %s", path, summary)
        target = output_path(args, path, len(paths))
        if target is not None:
            # drawn is RGB, OpenCV writes BGR; imwrite reports a failure only by returning False
            if not cv2.imwrite(target, np.ascontiguousarray(drawn[:, :, ::-1])):
                CHECKS.fail(f"could not write {target}: OpenCV's imwrite failed (a location "
                            "that takes no files, a full disk or an encoder it lacks); nothing "
                            "was saved. Choose another --output.")
            logger.info("wrote %s (%dx%d)", target, drawn.shape[1], drawn.shape[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
