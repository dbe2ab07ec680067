#!/usr/bin/env python
"""Parameters and GFLOPs of every depth setting of an ADN model.

    python tools/analyze_depths.py --config-file configs/mask_rcnn_ada_r50.yaml
    python tools/analyze_depths.py --config-file ... --depths FFFF TTTT --input-size 800 1333 --json
    python tools/analyze_depths.py --config-file ... --depths FFFF TTTT --opts MODEL.WEIGHTS m.pth

Config overrides (KEY VALUE pairs) go after --opts or after --, or last with no option
list before them; after --depths they would be read as depth settings, so each --depths
entry is checked when the arguments are read (exit status 2 for a bad one).

Backbone: the bottom-up network alone on a 224x224 image (the protocol of ImageNet tables).
Detector: the whole model in inference on one image of --input-size (default: the config's
test size). FLOPs are counted by fvcore (1 multiply-add = 1 FLOP); "params" counts the
parameters that take part in the forward pass at that depth.
"""
import argparse
import json
import sys

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager
from tabulate import tabulate

from adadet import add_adn_config, expand_depth_list, normalize_depth, using_depth
from adadet.config import merge_config
from adadet.checkpoint import ADNCheckpointer
from adadet.evaluation import backbone_cost, model_cost


def depth_argument(text: str) -> str:
    """A --depths entry: a depth setting or 'all'; anything else is refused at parse time."""
    if text.lower() == "all":
        return "all"
    try:
        return normalize_depth(text)
    except ValueError as e:
        hint = ""
        if not set(text.upper()) <= set("TF"):
            hint = (
                f" If {text!r} is a config override, put the overrides after --opts (or --): "
                f"--depths FFFF TTTT --opts {text} VALUE."
            )
        raise argparse.ArgumentTypeError(f"{e}{hint}") from None


def pixels_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of pixels: give the detector input as H W, "
            "e.g. --input-size 800 1333."
        )
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--depths", nargs="+", default=None, type=depth_argument,
                        help="depth settings, or 'all' (default: TEST.ADN.DEPTHS)")
    parser.add_argument("--input-size", nargs=2, type=pixels_argument, metavar=("H", "W"),
                        help="detector input size (default: INPUT.MIN_SIZE_TEST x MAX_SIZE_TEST)")
    parser.add_argument("--backbone-only", action="store_true", help="skip the detector column")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        metavar="KEY VALUE", help="config overrides, KEY VALUE pairs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE pairs (after --opts, -- or last)")
    args = parser.parse_args(argv)
    positional = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    args.opts = positional + args.flag_opts
    if len(args.opts) % 2:
        parser.error(f"config overrides come in KEY VALUE pairs; got {len(args.opts)} words: "
                     f"{args.opts}")
    if args.depths and "all" in args.depths and len(args.depths) > 1:
        parser.error("--depths all stands alone: give 'all' or a list of settings")
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = get_cfg()
    add_adn_config(cfg)
    merge_config(cfg, args.config_file, args.opts)  # clear errors for ints in float keys
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    depths = expand_depth_list(args.depths or list(cfg.TEST.ADN.DEPTHS))

    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS and PathManager.exists(cfg.MODEL.WEIGHTS):
        ADNCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:  # costs do not depend on weights, except how many boxes reach the mask head
        print(f"[analyze_depths] random init (no MODEL.WEIGHTS file: {cfg.MODEL.WEIGHTS!r})",
              file=sys.stderr)
    bottom_up = getattr(model.backbone, "bottom_up", model.backbone)
    height, width = args.input_size or (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    image = torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image.float(), "height": height, "width": width}]
    rows = []
    for index, setting in enumerate(depths, start=1):
        print(f"[analyze_depths] {index}/{len(depths)}: {setting}", file=sys.stderr, flush=True)
        with using_depth(model, setting):
            row = {"depth": setting, **backbone_cost(bottom_up, (224, 224))}
            if not args.backbone_only:
                detector = model_cost(model, inputs)
                row.update(detector_flops=detector["flops"], detector_params=detector["params"],
                           detector_input=[height, width])
        rows.append(row)

    if args.json:
        print(json.dumps(rows, indent=2))
        return
    headers = ["depth", "backbone GFLOPs (224x224)", "backbone params (M)"]
    if not args.backbone_only:
        headers += [f"detector GFLOPs ({height}x{width})", "detector params (M)"]
    table = [
        [row["depth"], row["flops"] / 1e9, row["params"] / 1e6]
        + ([row["detector_flops"] / 1e9, row["detector_params"] / 1e6] if not args.backbone_only else [])
        for row in rows
    ]
    print(tabulate(table, headers=headers, tablefmt="pipe", floatfmt=".2f"))


if __name__ == "__main__":
    main()
