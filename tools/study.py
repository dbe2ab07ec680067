#!/usr/bin/env python
"""The study: train recipes with several seeds, evaluate every depth setting, compare.

    tools/study.py                                         # stages vs sandwich, textures, seeds 0-2
    tools/study.py --recipes sandwich --split test         # the final figures
    tools/study.py --task polygons --recipes fpn stages    # the 6-class task, earlier recipes
    tools/study.py --recipes sandwich whole --reference sandwich --bn trained
                                                           # the whole detector beside the backbone-only one

Each run is ``tools/train_net.py`` (so every Detectron2 convention applies) with the
study's config (``configs/mask_rcnn_ada_r18_<task>_cpu.yaml``, ``--task`` polygons or
textures), ``SEED <seed>`` and the recipe's overrides, in ``<output>/<recipe>/seed<seed>``.
Then ``--eval-only`` evaluates its ``model_final.pth`` at every setting (the 16; the
``whole`` recipe, whose neck and heads adapt too, at 39 of its 128: ``EVALUATED``) on
``--split`` (``tune``: where recipes are compared;
``test``: the final figures, looked at by no choice), with the training BN statistics and
with per-depth BN statistics (``--bn`` both). A finished run or evaluation is not redone, so
an interrupted study continues where it stopped. The report (``study_<split>.{json,csv,md}``
and ``study_<split>.png``) gives per recipe and setting the mean and standard deviation
over seeds of box and mask AP, with backbone GFLOPs at 224x224, detector GFLOPs and
latency, and each recipe's Pareto front of AP against detector GFLOPs (what it spans: the
cost ratio of its most accurate point to its cheapest, and the AP lost between them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from adadet.depth import all_depths, mixed_depths
from adadet.evaluation.study_report import (
    aggregate_runs,
    claim_checks,
    depth_gap_by_seed,
    inversions_in_every_seed,
    paired_differences,
    pareto_summary,
    plot_costs,
    refinement_summary,
    runs_from_report,
    write_study,
)
from adadet.utils.environment import environment_differences, run_environment
from adadet.utils.command_line import check_overrides

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: --task -> the study's config; its data sets are adadet_<task>_{train,tune,test}.
TASKS = {task: os.path.join(ROOT, "configs", f"mask_rcnn_ada_r18_{task}_cpu.yaml")
         for task in ("polygons", "textures")}
STAGES = '["res2","res3","res4","res5"]'
ALL_SUBNETS = [d for d in all_depths(4) if d != "FFFF"]
FPN = '["p2","p3","p4","p5","p6"]'
#: The paper's students, the base-net alone (add_adn_config's default).
PAPER_STUDENT = ["MODEL.ADN.DISTILL.ALWAYS_STUDENTS", "[]", "MODEL.ADN.DISTILL.SUBNETS", '["TTTT"]']
#: Students drawn among all 15 sub-nets, none at every iteration.
DRAWN_FROM_ALL = ["MODEL.ADN.DISTILL.ALWAYS_STUDENTS", "[]", "MODEL.ADN.DISTILL.SUBNETS",
                  "[" + ",".join(f'"{d}"' for d in ALL_SUBNETS) + "]"]

#: The sandwich rule: the base-net every iteration plus one of the 14 mixed settings drawn.
SANDWICH = ["MODEL.ADN.DISTILL.FEATURES", STAGES, "MODEL.ADN.DISTILL.ALWAYS_STUDENTS", '["TTTT"]',
            "MODEL.ADN.DISTILL.SUBNETS", "[" + ",".join(f'"{d}"' for d in mixed_depths(4)) + "]"]

#: adadet's whole-detector architecture (configs/mask_rcnn_ada_r18_textures_whole_cpu.yaml):
#: the FPN's output convs, the RPN head's conv and the mask head's last conv adapt too.
WHOLE_DETECTOR = ["MODEL.BACKBONE.NAME", "build_resnet_adn_skippable_fpn_backbone",
                  "MODEL.RPN.HEAD_NAME", "SkippableRPNHead",
                  "MODEL.ROI_MASK_HEAD.NAME", "SkippableMaskRCNNConvUpsampleHead"]

#: Recipe name -> (what it is, config overrides). Each names its students, so a recipe
#: means the same whatever the defaults are. The ablations are the paper's, on its student.
RECIPES = {
    "fpn": (
        "the paper's student, per-position KL on the FPN levels p2-p6 (the first default)",
        [*PAPER_STUDENT, "MODEL.ADN.DISTILL.FEATURES", FPN],
    ),
    "stages": (
        "the paper's student, per-position KL on the stage outputs res2-res5 (the second default)",
        [*PAPER_STUDENT, "MODEL.ADN.DISTILL.FEATURES", STAGES],
    ),
    "stages_pooled": (
        "as 'stages', KL of globally pooled stage outputs, batchmean (the authors' ImageNet)",
        [*PAPER_STUDENT, "MODEL.ADN.DISTILL.FEATURES", STAGES, "MODEL.ADN.DISTILL.POOLING",
         "global", "MODEL.ADN.DISTILL.REDUCTION", "batchmean"],
    ),
    "stages_fpn": (
        "as 'stages', per-position KL on res2-res5 and p2-p6",
        [*PAPER_STUDENT, "MODEL.ADN.DISTILL.FEATURES",
         '["res2","res3","res4","res5","p2","p3","p4","p5","p6"]'],
    ),
    "no_kd": ("as 'stages', no distillation term: the base-net learns from labels only",
              [*PAPER_STUDENT, "MODEL.ADN.DISTILL.KD_WEIGHT", "0.0"]),
    "no_label": ("as 'stages', the base-net gets no label loss, only the distillation term "
                 "(the authors' ImageNet)",
                 [*PAPER_STUDENT, "MODEL.ADN.DISTILL.FEATURES", STAGES,
                  "MODEL.ADN.DISTILL.SUB_TASK_WEIGHT", "0.0"]),
    "super_only": ("the super-net alone (no student pass)", ["MODEL.ADN.DISTILL.ENABLED", "False"]),
    "random_subnets": (
        "a student drawn per iteration among all 15 sub-nets (not the paper)",
        DRAWN_FROM_ALL,
    ),
    "three_students": (
        "3 students per iteration drawn among all 15 sub-nets (sandwich-like, not the paper)",
        [*DRAWN_FROM_ALL, "MODEL.ADN.DISTILL.NUM_STUDENTS", "3"],
    ),
    "sandwich": (
        "the base-net every iteration plus one of the 14 mixed settings drawn (the sandwich "
        "rule; the students of adadet's CPU configs, chosen by the study)",
        SANDWICH,
    ),
    "whole": (
        "the whole-detector architecture (backbone, FPN, RPN head and mask head adapt), the "
        "sandwich rule over its 128 settings: the whole base-net every iteration plus one of "
        "the 126 mixed settings drawn (mask_rcnn_ada_r18_textures_whole_cpu.yaml)",
        [*WHOLE_DETECTOR, "MODEL.ADN.DISTILL.FEATURES", STAGES,
         "MODEL.ADN.DISTILL.ALWAYS_STUDENTS", '["base"]', "MODEL.ADN.DISTILL.SUBNETS", '["mixed"]'],
    ),
    "whole_arch": (
        "the whole-detector architecture trained as 'sandwich': students over the backbone's "
        "settings only, the neck and heads never skip (what the architecture alone costs)",
        [*WHOLE_DETECTOR, "MODEL.ADN.DISTILL.FEATURES", STAGES,
         "MODEL.ADN.DISTILL.ALWAYS_STUDENTS", '["TTTTFFF"]',
         "MODEL.ADN.DISTILL.SUBNETS", json.dumps([d + "FFF" for d in mixed_depths(4)])],
    ),
    "whole_nested": (
        "the whole-detector architecture, 'sandwich' over the backbone's settings and the "
        "whole base-net: every iteration TTTTFFF and TTTTTTT plus one of the 14 mixed "
        "backbone settings drawn (4 passes)",
        [*WHOLE_DETECTOR, "MODEL.ADN.DISTILL.FEATURES", STAGES,
         "MODEL.ADN.DISTILL.ALWAYS_STUDENTS", '["TTTTFFF","base"]',
         "MODEL.ADN.DISTILL.SUBNETS", json.dumps([d + "FFF" for d in mixed_depths(4)])],
    ),
    "sandwich_pooled": (
        "as 'sandwich', KL of globally pooled stage outputs, batchmean (the authors' ImageNet)",
        [*SANDWICH, "MODEL.ADN.DISTILL.POOLING", "global", "MODEL.ADN.DISTILL.REDUCTION",
         "batchmean"],
    ),
    "shared_norms": (
        "as 'stages', without switchable norms: one norm set for every depth (the paper's ablation)",
        [*PAPER_STUDENT, "MODEL.ADN.SWITCHABLE_NORMS", "False"],
    ),
    "switch_shortcut": (
        "as 'stages', with skip norms on the shortcuts of mandatory blocks too",
        [*PAPER_STUDENT, "MODEL.ADN.SWITCH_SHORTCUT_NORM", "True"],
    ),
}

BN_MODES = {"trained": "False", "per_depth": "True"}


def whole_detector_settings():
    """The settings a whole-detector recipe is evaluated at (39 of its 128: all 128 take
    8x a backbone-only evaluation): the backbone's 16 with the neck and heads in full
    (the settings a backbone-only model has) and with all three skipped, each of the three
    skipped alone at both ends of the backbone, and the chain's last steps."""
    settings = [b + "FFF" for b in all_depths(4)] + [b + "TTT" for b in all_depths(4)]
    settings += [b + part for b in ("FFFF", "TTTT") for part in ("TFF", "FTF", "FFT")]
    settings.append("TTTTTTF")
    return list(dict.fromkeys(settings))


#: recipe -> the depth settings it is evaluated at (default: all 16 of a backbone-only model)
EVALUATED = {r: whole_detector_settings() for r in ("whole", "whole_arch", "whole_nested")}


def environment(task, split):
    """What the study's figures depend on besides config and seed (adadet.utils.environment):
    the commit, CPU, threads, library versions and the files of the training and the
    evaluated split (generated now if they are not yet)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import adadet.data  # noqa: F401  (registers the embedded data sets)

    files = []
    for name in (f"adadet_{task}_train", f"adadet_{task}_{split}"):
        DatasetCatalog.get(name)  # generates the split on first use
        meta = MetadataCatalog.get(name)
        files += [meta.json_file] + [
            os.path.join(meta.image_root, f) for f in sorted(os.listdir(meta.image_root))]
    return run_environment(ROOT, files, torch.get_num_threads())


def _run(command, log_path, what):
    """Run a command with its output to ``log_path``; say what it is and how long it took."""
    start = time.perf_counter()
    print(f"[study] {what} ...", flush=True)
    with open(log_path, "a") as log:  # appends: a resumed run keeps its first part
        returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if returncode != 0:
        sys.exit(f"[study] {what} failed (exit {returncode}); its log: {log_path}")
    print(f"[study] {what}: done in {time.perf_counter() - start:.0f} s", flush=True)


def train(task, run_dir, recipe, seed, extra_opts):
    if os.path.isfile(os.path.join(run_dir, "model_final.pth")):
        return
    os.makedirs(run_dir, exist_ok=True)
    # --resume: an interrupted run continues from its last checkpoint (every 200 iterations)
    command = [sys.executable, os.path.join(HERE, "train_net.py"), "--resume",
               "--config-file", TASKS[task], "SEED", str(seed), "OUTPUT_DIR", run_dir,
               "DATASETS.TEST", "()", *RECIPES[recipe][1], *extra_opts]
    _run(command, os.path.join(run_dir, "train.log"), f"training {recipe} seed {seed}")


def seconds_per_iteration(run_dir):
    """The median iteration time of a run (Detectron2's metrics.json "time")."""
    times = []
    with open(os.path.join(run_dir, "metrics.json")) as f:
        for line in f:
            record = json.loads(line)
            if "time" in record:
                times.append(record["time"])
    return statistics.median(times) if times else float("nan")


def evaluate(task, run_dir, recipe, split, bn, extra_opts):
    out_dir = os.path.join(run_dir, f"eval_{split}_{bn}")
    report = os.path.join(out_dir, "depth_eval.json")
    if not os.path.isfile(report):
        os.makedirs(out_dir, exist_ok=True)
        command = [sys.executable, os.path.join(HERE, "train_net.py"), "--eval-only",
                   "--config-file", TASKS[task], *RECIPES[recipe][1], *extra_opts,
                   "MODEL.WEIGHTS", os.path.join(run_dir, "model_final.pth"),
                   "OUTPUT_DIR", out_dir,
                   "TEST.ADN.DEPTHS", json.dumps(EVALUATED.get(recipe, ["all"])),
                   "DATASETS.TEST", f'("adadet_{task}_{split}",)',
                   "TEST.ADN.PRECISE_BN.ENABLED", BN_MODES[bn]]
        _run(command, os.path.join(out_dir, "eval.log"),
             f"evaluating {os.path.relpath(run_dir, ROOT)} on {split}, {bn} BN statistics")
    with open(report) as f:
        return json.load(f)["depths"]


def analyze_features(task, run_dir, recipe, split, extra_opts):
    """tools/analyze_features.py on the run's model: how far each stage output moves when
    its skippable sub-path is skipped (20 images of the split)."""
    out_dir = os.path.join(run_dir, f"features_{split}")
    report = os.path.join(out_dir, "features.json")
    if not os.path.isfile(report):
        command = [sys.executable, os.path.join(HERE, "analyze_features.py"),
                   "--config-file", TASKS[task], "--images", "20", "--output", out_dir,
                   *RECIPES[recipe][1], *extra_opts,
                   "MODEL.WEIGHTS", os.path.join(run_dir, "model_final.pth"),
                   "DATASETS.TEST", f'("adadet_{task}_{split}",)']
        os.makedirs(out_dir, exist_ok=True)
        _run(command, os.path.join(out_dir, "features.log"),
             f"feature analysis of {os.path.relpath(run_dir, ROOT)}")
    with open(report) as f:
        return json.load(f)["stages"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Recipes:\n" + "\n".join(
                                         f"  {k:16s} {v[0]}" for k, v in RECIPES.items()))
    parser.add_argument("--task", choices=sorted(TASKS), default="textures",
                        help="the generated task: textures (12 classes: shape x fill, with "
                             "clutter; the default) or polygons (6 classes)")
    parser.add_argument("--recipes", nargs="+", default=["stages", "sandwich"],
                        choices=sorted(RECIPES),
                        help="default: stages (the paper's student) and sandwich (the CPU configs')")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--split", choices=["tune", "test"], default="tune",
                        help="tune: compare recipes; test: the final figures (default: tune)")
    parser.add_argument("--bn", nargs="+", choices=sorted(BN_MODES), default=sorted(BN_MODES),
                        help="BN statistics to evaluate with (default: both)")
    parser.add_argument("--output", default=os.path.join(ROOT, "output", "study"))
    parser.add_argument("--reference", default="stages", choices=sorted(RECIPES),
                        help="the recipe the others are compared with, paired by seed "
                             "(default: stages, the paper's student; if it is not among "
                             "--recipes, the first of them, and the study says so)")
    parser.add_argument("--stored", action="append", default=[], metavar="RECIPE=REPORT",
                        help="take RECIPE's runs from an earlier study's report (its AP per "
                             "seed) instead of training it, e.g. sandwich=docs/study/"
                             "textures_tune.json; sound only where a rerun reproduces them")
    parser.add_argument("--train-only", action="store_true", help="train, do not evaluate")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every run (KEY VALUE ...), e.g. SOLVER.MAX_ITER 300")
    args = parser.parse_args(argv)
    check_overrides(parser, args.opts)
    if len(args.seeds) < 2:
        parser.error("give at least 2 seeds (--seeds): a spread needs several runs")

    here = environment(args.task, args.split)
    stored, stored_paths, stored_runs = {}, {}, {}
    for item in args.stored:
        recipe, _, path = item.partition("=")
        if recipe not in RECIPES:
            parser.error(f"--stored {item}: give RECIPE=REPORT with RECIPE one of {sorted(RECIPES)}")
        if not os.path.isfile(path):
            parser.error(f"--stored {item}: no file {path}; give the .json a study wrote")
        with open(path) as f:
            stored[recipe] = json.load(f)
        stored_paths[recipe] = path
        if stored[recipe]["info"]["split"] != f"adadet_{args.task}_{args.split}":
            parser.error(f"--stored {item}: that report is of {stored[recipe]['info']['split']}, "
                         f"this study of adadet_{args.task}_{args.split}")
        differences = environment_differences(stored[recipe]["info"].get("environment", {}), here)
        if differences:
            parser.error(
                f"--stored {item}: its runs were made elsewhere ({'; '.join(differences)}). "
                "Runs repeat to the bit only on one machine with one code and data, so pairing "
                f"new runs with them by seed is unsound: train {recipe} here instead.")
        for bn in args.bn:  # read once, here, so that a bad report stops before any training
            try:
                stored_runs[f"{recipe}/{bn}"] = runs_from_report(
                    stored[recipe], f"{recipe}/{bn}", args.seeds)
            except ValueError as error:
                parser.error(f"--stored {item}: {error}")
    recipes = list(dict.fromkeys([*args.recipes, *stored]))

    start = time.perf_counter()
    runs = {(r, s): os.path.join(args.output, r, f"seed{s}")
            for r in args.recipes if r not in stored for s in args.seeds}
    for (recipe, seed), run_dir in runs.items():
        train(args.task, run_dir, recipe, seed, args.opts)
    if args.train_only:
        return
    rows, paired, depth_gap, inversions = [], {}, {}, {}
    reference = args.reference if args.reference in recipes else recipes[0]
    if reference != args.reference and len(recipes) > 1:
        print(f"[study] --reference {args.reference} is not among --recipes: the others are "
              f"compared with {reference}")
    for bn in args.bn:
        per_recipe = {}
        for recipe in recipes:
            key = f"{recipe}/{bn}"
            per_recipe[key] = stored_runs[key] if recipe in stored else [
                evaluate(args.task, runs[recipe, s], recipe, args.split, bn, args.opts)
                for s in args.seeds]
        rows += aggregate_runs(per_recipe)
        paired.update(paired_differences(per_recipe, f"{reference}/{bn}"))
        depth_gap.update(depth_gap_by_seed(per_recipe))
        for key, seeds in per_recipe.items():
            inversions[key] = {m: inversions_in_every_seed(seeds, m) for m in ("box_AP", "mask_AP")}
    timing = {r: stored[r]["info"]["recipes"][r]["seconds_per_iteration"] if r in stored else
              statistics.fmean(seconds_per_iteration(runs[r, s]) for s in args.seeds)
              for r in recipes}
    info = {
        "title": f"adadet study: R-18-ADN Mask R-CNN, adadet_{args.task}_{args.split}, "
                 f"seeds {args.seeds}",
        "split": f"adadet_{args.task}_{args.split}",
        "seeds": args.seeds,
        "recipes": {r: {"what": RECIPES[r][0], "overrides": RECIPES[r][1],
                        "seconds_per_iteration": timing[r]} for r in recipes},
        "stored": stored_paths,
        "opts": args.opts,
        "minutes": (time.perf_counter() - start) / 60,
        "environment": here,
        "paired": paired,
        "depth_gap": depth_gap,
        "inversions": inversions,
    }
    info["refinement"] = {
        r: stored[r]["info"].get("refinement", {}).get(r, []) if r in stored else
        refinement_summary([analyze_features(args.task, runs[r, s], r, args.split, args.opts)
                            for s in args.seeds])
        for r in recipes
    }
    paths = write_study(rows, args.output, f"study_{args.split}", info)
    print(open(paths["md"]).read())
    for key in dict.fromkeys(r["recipe"] for r in rows):
        check = claim_checks([r for r in rows if r["recipe"] == key], "box_AP")
        print(f"[study] {key}: super - base box AP {check.get('super_minus_base', float('nan')):+.1f} "
              f"(± {check.get('super_minus_base_std', float('nan')):.1f}); chain rises "
              f"{len(check['chain_rises'])}, dominance violations "
              f"{len(check['dominance_violations'])}/{check['dominance_pairs']}: "
              f"{'HOLDS' if check['holds'] else 'does not hold'}")
    cost = plot_costs(rows)[0]
    for key in dict.fromkeys(r["recipe"] for r in rows):
        for metric in ("box_AP", "mask_AP"):
            front = pareto_summary([r for r in rows if r["recipe"] == key], metric, cost)
            if front["front"]:
                print(f"[study] {key}: Pareto front of {metric.replace('_', ' ')} over {cost} "
                      f"{' > '.join(reversed(front['front']))}: {front['cost_ratio']:.2f}x for "
                      f"{front['ap_lost']:.1f} AP")
    for key, by_metric in inversions.items():
        print(f"[study] {key}: strictly cheaper setting ahead in every seed: " + ", ".join(
            f"{len(i['inversions'])}/{i['pairs']} {m.replace('_', ' ')} pairs"
            for m, i in by_metric.items()))
    for key, g in depth_gap.items():
        print(f"[study] {key}: {g['dearer']} - {g['cheaper']} box AP per seed {g['mean']:+.2f} ± {g['std']:.2f} "
              f"({' / '.join(f'{d:+.2f}' for d in g['per_seed'])})")
    for key, p in paired.items():
        print(f"[study] {key} - {p['reference']}: {p['mean_difference']:+.2f} ± {p['std']:.2f} "
              f"box AP over the settings, paired by seed; ahead at {p['settings_ahead']} of "
              f"{p['settings']} settings")
    for r in recipes:
        print(f"[study] {r}: {timing[r]:.2f} s per iteration")
    print("[study] written: " + ", ".join(paths.values()))


if __name__ == "__main__":
    main()
