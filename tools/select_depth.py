#!/usr/bin/env python
"""Choose the depth setting to deploy under a latency / GFLOPs / AP budget, from a per-depth
evaluation report (OUTPUT_DIR/depth_eval.json of tools/train_net.py --eval-only).

    tools/select_depth.py output/depth_eval.json --max-latency-ms 50
    tools/select_depth.py output/depth_eval.json --max-gflops 120 --min-ap 35 --metric mask_AP
    tools/select_depth.py output/depth_eval.json --min-ap 38        # the cheapest reaching it

With a cost limit: the highest AP among the settings within every limit (equal AP: the
faster, then fewer GFLOPs). With --min-ap alone: the cheapest setting (latency, then
GFLOPs) that reaches it. Prints the choice, its numbers against the limits, the runner-up
and the excluded settings. Latency limits hold for the device the table was measured on.

Exit status: 0 a setting was selected; 1 no setting fits the limits (saying which limit
excluded which and the closest candidate), and nothing else; 2 a usage or input error (a
limit that is NaN, infinite or negative, a missing or malformed table, a metric the table
does not measure, or any other failure).

Measuring on the spot (--config-file + MODEL.WEIGHTS instead of a table) is not provided:
run the per-depth evaluation first.
"""
import argparse
import json
import sys
import traceback

from adadet.deploy.select import (
    DepthBudget,
    NoDepthFits,
    format_selection,
    load_depth_table,
    select_depth,
    selection_to_dict,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Exit status:"):].split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("table", metavar="DEPTH_EVAL_JSON", help="depth_eval.json of the evaluation")
    parser.add_argument("--max-latency-ms", type=float, default=None)
    parser.add_argument("--max-gflops", type=float, default=None)
    parser.add_argument("--min-ap", type=float, default=None, help="in COCO percent, e.g. 35.0")
    parser.add_argument("--metric", default="box_AP",
                        help="AP column to rank by and to hold --min-ap to: box_AP (default), "
                             "mask_AP, or any AP column of the table (box_AP50, ...)")
    parser.add_argument("--ap-tolerance", type=float, default=0.0,
                        help="AP within this many points of the best counts as a tie, won by "
                             "the cheaper setting (default 0: exact ties only)")
    parser.add_argument("--json", action="store_true", help="print the choice as JSON")
    args = parser.parse_args(argv)
    if args.max_latency_ms is None and args.max_gflops is None and args.min_ap is None:
        parser.error("give at least one limit: --max-latency-ms, --max-gflops or --min-ap")
    try:
        args.budget = DepthBudget(
            max_latency_ms=args.max_latency_ms, max_gflops=args.max_gflops, min_ap=args.min_ap,
            metric=args.metric, ap_tolerance=args.ap_tolerance,
        )
    except ValueError as e:
        message = str(e)
        for field in ("max_latency_ms", "max_gflops", "min_ap", "ap_tolerance"):
            message = message.replace(f"limit {field} =", "--" + field.replace("_", "-"))
        parser.error(message)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    budget = args.budget
    try:
        rows, source = load_depth_table(args.table)
        selection = select_depth(rows, budget, source)
    except NoDepthFits as e:
        if args.json:
            print(json.dumps({"depth": None, "error": str(e), "excluded": e.excluded,
                              "closest": e.closest}, indent=2))
        print(f"[select_depth] {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"[select_depth] {e}", file=sys.stderr)
        return 2
    except Exception:  # exit 1 means "nothing fits" only
        traceback.print_exc()
        print("[select_depth] failed (exit status 2).", file=sys.stderr)
        return 2
    print(json.dumps(selection_to_dict(selection), indent=2) if args.json else format_selection(selection))
    return 0


if __name__ == "__main__":
    sys.exit(main())
