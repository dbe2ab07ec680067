#!/usr/bin/env python
"""Parameters and GFLOPs of every depth setting of an ADN model.

    python tools/analyze_depths.py --config-file configs/mask_rcnn_ada_r50.yaml
    python tools/analyze_depths.py --config-file ... --depths FFFF TTTT --input-size 800 1333 --json
    python tools/analyze_depths.py --config-file ... --depths FFFF TTTT --opts MODEL.WEIGHTS m.pth
    python tools/analyze_depths.py --config-file configs/mask_rcnn_ada_r50_whole.yaml \
        --depths super TTTT base --input-size 800 1216 --detections 100

Config overrides (KEY VALUE pairs) go after --opts or after --, or last with no option
list before them; after --depths they would be read as depth settings, so each --depths
entry is checked when the arguments are read, and against the model's letters once the
config is read (exit status 2 for a bad one).

Backbone: the bottom-up network alone on a 224x224 image (the protocol of ImageNet tables).
Detector: the whole model in inference on one image of --input-size (default: the config's
test size), split into its parts: backbone (the bottom-up network), FPN, RPN, box head,
mask head (RetinaNet: head), other (postprocessing: pasting masks into the image, which
follows the boxes' sizes). What the ROI heads cost follows how many boxes the
model keeps, so with random weights give --detections N: every image then keeps exactly N
(score threshold 0, no NMS; the RPN keeps MODEL.RPN.POST_NMS_TOPK_TEST proposals). FLOPs
are counted by fvcore (1 multiply-add = 1 FLOP); "params" counts the parameters that take
part in the forward pass at that depth. Settings name every adaptive part of the model
(docs/configuration.md): a backbone's 4 letters alone run the neck and heads in full.
"""
import argparse
import json
import sys

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.utils.file_io import PathManager
from tabulate import tabulate

from adadet import add_adn_config, using_depth
from adadet.config import merge_config
from adadet.checkpoint import ADNCheckpointer
from adadet.evaluation import backbone_cost, fixed_detections, model_cost
from adadet.modeling.adaptive_parts import config_depth_layout
from adadet.utils.command_line import (
    check_depth_list,
    check_overrides,
    depth_list_argument,
    positive_int_argument,
)


count_argument = positive_int_argument("number of detections", "--detections 100")
pixels_argument = positive_int_argument(
    "number of pixels", "--input-size 800 1333", "give the detector input as H W,")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--depths", nargs="+", default=None, type=depth_list_argument,
                        help="depth settings, or 'all' / 'mixed' (default: TEST.ADN.DEPTHS)")
    parser.add_argument("--input-size", nargs=2, type=pixels_argument, metavar=("H", "W"),
                        help="detector input size (default: INPUT.MIN_SIZE_TEST x MAX_SIZE_TEST)")
    parser.add_argument("--detections", type=count_argument, metavar="N",
                        help="count the detector with exactly N detections per image (score "
                             "threshold 0, no NMS), so that its cost does not follow the weights")
    parser.add_argument("--backbone-only", action="store_true", help="skip the detector columns")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--opts", dest="flag_opts", nargs=argparse.REMAINDER, default=[],
                        metavar="KEY VALUE", help="config overrides, KEY VALUE pairs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, KEY VALUE pairs (after --opts, -- or last)")
    args = parser.parse_args(argv)
    positional = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    args.opts = positional + args.flag_opts
    check_overrides(parser, args.opts)
    check_depth_list(parser, "--depths", args.depths)
    if args.detections and args.backbone_only:
        parser.error("--detections counts the detector: leave out --backbone-only")
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = get_cfg()
    add_adn_config(cfg)
    merge_config(cfg, args.config_file, args.opts)  # clear errors for ints in float keys
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if args.detections:
        fixed_detections(cfg, args.detections)
    cfg.freeze()
    try:
        depths = config_depth_layout(cfg).expand(args.depths or list(cfg.TEST.ADN.DEPTHS))
    except ValueError as e:  # a bad argument, as argparse reports one (exit status 2)
        print(f"analyze_depths.py: error: argument --depths: {e}", file=sys.stderr)
        sys.exit(2)

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
                row.update(detector_flops=detector["flops"], detector_parts=detector["parts"],
                           detector_params=detector["params"], detector_input=[height, width])
                if args.detections:
                    row["detections"] = check_detections(model, inputs, args.detections, cfg)
        rows.append(row)

    if args.json:
        print(json.dumps(rows, indent=2))
        return
    headers = ["depth", "backbone GFLOPs (224x224)", "backbone params (M)"]
    parts = list(rows[0]["detector_parts"]) if not args.backbone_only else []
    if parts:
        at = f"{height}x{width}" + (f", {args.detections} det." if args.detections else "")
        headers += [f"{p} GF" for p in parts] + [f"detector GFLOPs ({at})", "detector params (M)"]
    table = [
        [row["depth"], row["flops"] / 1e9, row["params"] / 1e6]
        + ([row["detector_parts"][p] / 1e9 for p in parts]
           + [row["detector_flops"] / 1e9, row["detector_params"] / 1e6] if parts else [])
        for row in rows
    ]
    print(tabulate(table, headers=headers, tablefmt="pipe", floatfmt=".2f"))
    if len(rows) > 1 and parts:
        ratio = rows[0]["detector_flops"] / rows[-1]["detector_flops"]
        print(f"[analyze_depths] detector GFLOPs {rows[0]['depth']} / {rows[-1]['depth']}: "
              f"{ratio:.2f}x")


@torch.no_grad()
def check_detections(model, inputs, count, cfg) -> int:
    """The detections the model keeps per image, which --detections fixes; exit 1 naming
    the limit if a model whose ROI heads run per detection cannot keep that many (a dense
    head such as RetinaNet's costs the same whatever it keeps)."""
    kept = [len(out["instances"]) for out in model(inputs)]
    if not hasattr(model, "roi_heads"):
        return min(kept)
    if any(k != count for k in kept):
        sys.exit(
            f"analyze_depths.py: --detections {count}: the model kept {min(kept)} detections "
            f"per image; with {cfg.MODEL.RPN.POST_NMS_TOPK_TEST} proposals "
            f"(MODEL.RPN.POST_NMS_TOPK_TEST) x the classes it cannot keep more: give a smaller "
            f"--detections or raise MODEL.RPN.POST_NMS_TOPK_TEST.")
    return count


if __name__ == "__main__":
    main()
