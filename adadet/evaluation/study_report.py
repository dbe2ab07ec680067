"""The study's report: per recipe and depth setting, the mean and spread over seeds.

Input: for each recipe, the ``depth_eval.json`` rows of each seed's run (one row per
setting, as :func:`adadet.evaluation.report_rows` writes them). Output: one row per
(recipe, setting) with ``<metric>_mean`` / ``<metric>_std`` (sample standard deviation
over seeds) and the checks of the paper's claim that every mixed setting lies between
the super-net and the base-net:

* **chain**: along FFFF -> TFFF -> TTFF -> TTTF -> TTTT (one more stage skips at each step;
  a whole detector's settings continue with its neck and head letters, FFFFFFF -> ... ->
  TTTTTTT) the mean AP never rises by more than one standard deviation;
* **dominance**: no setting that skips a strict superset of another's stages (so costs
  less) beats it by more than one standard deviation.

"One standard deviation" of a difference is the larger of the two settings' spreads.

The dominance check is also made **paired by seed** (:func:`inversions_in_every_seed`):
both settings of a pair are the same model, so a cheaper setting ahead of a dearer one in
every seed is an inversion however small it is next to the spread between seeds.

Recipes are also compared **paired by seed** (:func:`paired_differences`): a seed fixes
the initial weights and the order of the training images for every recipe, so the
difference of two recipes' runs of one seed is free of the spread between seeds, which
is as large as the differences a recipe makes. A whole-detector model (7 letters) is
compared with a backbone-only one (4) at the backbone-only settings, where its neck and
heads run in full (``TTFF`` = ``TTFFFFF``).
"""
import csv
import json
import math
import os
import statistics
from typing import Any, Dict, List, Mapping, Sequence

from ..depth import depth_chain, normalize_depth
from .depth_report import pareto_front

__all__ = [
    "aggregate_runs",
    "backbone_only",
    "claim_checks",
    "depth_gap_by_seed",
    "format_refinement_table",
    "format_paired_table",
    "format_pareto",
    "format_study_table",
    "inversions_in_every_seed",
    "paired_differences",
    "pareto_summary",
    "plot_study",
    "refinement_summary",
    "runs_from_report",
    "write_study",
]

METRICS = ("box_AP", "mask_AP")
COSTS = ("backbone_gflops", "gflops", "latency_ms")


def _mean_std(values: Sequence[float]):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate_runs(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> List[Dict[str, Any]]:
    """``{recipe: [rows of seed 0, rows of seed 1, ...]}`` -> one row per (recipe, depth):
    recipe, depth, seeds, then ``<metric>_mean``/``_std`` for AP and costs, and each AP per
    seed in seed order (``<metric>_per_seed``: later studies can pair their runs with
    these by seed)."""
    out = []
    for recipe, seeds in runs.items():
        by_depth: Dict[str, List[Mapping[str, Any]]] = {}
        for rows in seeds:
            for row in rows:
                by_depth.setdefault(row["depth"], []).append(row)
        for depth, rows in by_depth.items():
            row: Dict[str, Any] = {"recipe": recipe, "depth": depth, "seeds": len(rows)}
            for key in METRICS + COSTS:
                if all(key in r for r in rows):
                    values = [float(r[key]) for r in rows]
                    row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
                    if key in METRICS:
                        row[f"{key}_per_seed"] = values
            out.append(row)
    return out


def _letters(depths) -> int:
    """The number of letters of a recipe's settings."""
    return len(next(iter(depths)))


def backbone_only(ap: Mapping[str, float], num_backbone_flags: int = 4) -> Dict[str, float]:
    """The backbone-only settings of a whole detector's ``{setting: value}`` (its neck and
    heads run in full: ``TTFFFFF``), named by their backbone letters (``TTFF``)."""
    return {d[:num_backbone_flags]: v for d, v in ap.items()
            if set(d[num_backbone_flags:]) <= {"F"}}


def _skips_superset(cheaper: str, dearer: str) -> bool:
    """Whether ``cheaper`` skips every stage ``dearer`` skips, and more."""
    return cheaper != dearer and all(a == "T" or b == "F" for a, b in zip(cheaper, dearer))


def claim_checks(rows: Sequence[Mapping[str, Any]], metric: str = "box_AP") -> Dict[str, Any]:
    """The chain and dominance checks of one recipe's rows (see the module docstring)."""
    by_depth = {r["depth"]: r for r in rows}
    mean = {d: r[f"{metric}_mean"] for d, r in by_depth.items()}
    std = {d: r[f"{metric}_std"] for d, r in by_depth.items()}
    letters = _letters(by_depth)
    chain = [d for d in depth_chain(letters) if d in by_depth]
    top, bottom = "F" * letters, "T" * letters

    def gain_beyond_noise(cheaper: str, dearer: str):
        """How far ``cheaper`` is ahead of ``dearer`` when by more than one std, else None."""
        gain = mean[cheaper] - mean[dearer]
        return gain if gain > max(std[cheaper], std[dearer]) else None

    rises = [
        {"from": dearer, "to": cheaper, "gain": gain}
        for dearer, cheaper in zip(chain, chain[1:])
        if (gain := gain_beyond_noise(cheaper, dearer)) is not None
    ]
    pairs = [(a, b) for a in by_depth for b in by_depth if _skips_superset(a, b)]
    violations = [
        {"cheaper": cheaper, "dearer": dearer, "gain": gain}
        for cheaper, dearer in pairs
        if (gain := gain_beyond_noise(cheaper, dearer)) is not None
    ]
    result: Dict[str, Any] = {
        "metric": metric,
        "chain": chain,
        "chain_rises": rises,
        "dominance_pairs": len(pairs),
        "dominance_violations": sorted(violations, key=lambda v: -v["gain"]),
        "holds": not rises and not violations,
    }
    if top in mean and bottom in mean:
        result["super_minus_base"] = mean[top] - mean[bottom]
        result["super_minus_base_std"] = max(std[top], std[bottom])
    return result


def pareto_summary(rows: Sequence[Mapping[str, Any]], metric: str = "box_AP",
                   cost: str = "gflops") -> Dict[str, Any]:
    """The Pareto front of one recipe's settings (mean ``cost`` against mean ``metric``:
    the settings that no other setting beats on both), cheapest first, and what it spans:
    the cost ratio of its most accurate point to its cheapest, and the AP lost between
    them. Settings without that cost are left out (an empty front if none has it)."""
    own = [r for r in rows if f"{cost}_mean" in r and f"{metric}_mean" in r
           and not math.isnan(r[f"{cost}_mean"])]
    front = [own[i] for i in pareto_front([(r[f"{cost}_mean"], r[f"{metric}_mean"]) for r in own])]
    result: Dict[str, Any] = {"metric": metric, "cost": cost,
                              "front": [r["depth"] for r in front]}
    if front:
        cheapest, best = front[0], front[-1]
        result["cost_ratio"] = best[f"{cost}_mean"] / cheapest[f"{cost}_mean"]
        result["ap_lost"] = best[f"{metric}_mean"] - cheapest[f"{metric}_mean"]
        result["points"] = [
            {"depth": r["depth"], cost: r[f"{cost}_mean"], metric: r[f"{metric}_mean"],
             **({"latency_ms": r["latency_ms_mean"]} if "latency_ms_mean" in r else {})}
            for r in front]
    return result


def inversions_in_every_seed(
    seeds: Sequence[Sequence[Mapping[str, Any]]], metric: str = "box_AP"
) -> Dict[str, Any]:
    """The pairs of one recipe's settings where the strictly cheaper one (it skips every
    part the other skips, and more) is ahead in every seed: ``seeds`` holds each seed's
    rows (one per setting). Returns the number of pairs compared and the inversions, each
    with its gain per seed and their mean, the largest mean first."""
    per_seed = [{r["depth"]: float(r[metric]) for r in rows if metric in r} for rows in seeds]
    common = [d for d in per_seed[0] if all(d in ap for ap in per_seed)] if per_seed else []
    pairs = [(a, b) for a in common for b in common if _skips_superset(a, b)]
    inversions = []
    for cheaper, dearer in pairs:
        gains = [ap[cheaper] - ap[dearer] for ap in per_seed]
        if all(g > 0 for g in gains):
            inversions.append({"cheaper": cheaper, "dearer": dearer, "per_seed": gains,
                               "mean": statistics.fmean(gains)})
    return {"metric": metric, "seeds": len(per_seed), "pairs": len(pairs),
            "inversions": sorted(inversions, key=lambda v: -v["mean"])}


def paired_differences(
    runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], reference: str,
    metric: str = "box_AP",
) -> Dict[str, Dict[str, Any]]:
    """Each recipe of ``runs`` (as for :func:`aggregate_runs`, the seeds in the same order
    for every recipe) against ``reference``, seed by seed: per seed, the mean over the depth
    settings both evaluated of (recipe - reference); then the mean and sample std of those
    over seeds, and at how many settings the recipe's mean over seeds is ahead."""
    base = runs[reference]
    out = {}
    for recipe, seeds in runs.items():
        if recipe == reference:
            continue
        if len(seeds) != len(base):
            raise ValueError(f"{recipe} has {len(seeds)} seeds, {reference} {len(base)}: "
                             "a paired comparison needs the same seeds")
        per_seed, per_setting = [], {}
        for rows, base_rows in zip(seeds, base):
            ours = {r["depth"]: float(r[metric]) for r in rows}
            theirs = {r["depth"]: float(r[metric]) for r in base_rows}
            if _letters(ours) != _letters(theirs):  # a whole detector and a backbone-only one
                ours, theirs = backbone_only(ours), backbone_only(theirs)
            common = [d for d in ours if d in theirs]
            for d in common:
                per_setting.setdefault(d, []).append(ours[d] - theirs[d])
            per_seed.append(statistics.fmean(ours[d] - theirs[d] for d in common))
        mean, std = _mean_std(per_seed)
        ahead = sum(statistics.fmean(v) > 0 for v in per_setting.values())
        out[recipe] = {"reference": reference, "metric": metric, "mean_difference": mean,
                       "std": std, "per_seed": per_seed, "settings_ahead": ahead,
                       "settings": len(per_setting)}
    return out


def depth_gap_by_seed(
    runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], dearer: str = "super",
    cheaper: str = "base", metric: str = "box_AP",
) -> Dict[str, Dict[str, Any]]:
    """What depth buys, per recipe and seed: ``dearer`` - ``cheaper`` of the same model
    (by default the super-net's lead over the base-net, each of its own number of letters),
    then the mean and sample std over seeds.
    Both settings share one model's weights, so this spread is that of the gap itself,
    smaller than the spread of either setting across seeds."""
    out = {}
    for recipe, seeds in runs.items():
        per_seed = []
        for rows in seeds:
            ap = {r["depth"]: float(r[metric]) for r in rows}
            if not ap:
                continue
            high, low = (normalize_depth(d, _letters(ap)) for d in (dearer, cheaper))
            if high in ap and low in ap:
                per_seed.append(ap[high] - ap[low])
        if per_seed:
            mean, std = _mean_std(per_seed)
            out[recipe] = {"dearer": high, "cheaper": low, "metric": metric,
                           "mean": mean, "std": std, "per_seed": per_seed}
    return out


def format_paired_table(paired: Mapping[str, Mapping[str, Any]]) -> str:
    """recipe | against | mean difference ± std | per seed | settings ahead."""
    lines = ["| recipe | against | difference over the settings (mean ± std over seeds) "
             "| per seed | settings ahead |", "|---|---|---|---|---|"]
    for recipe, p in paired.items():
        seeds = " / ".join(f"{d:+.2f}" for d in p["per_seed"])
        lines.append(f"| {recipe} | {p['reference']} | {p['mean_difference']:+.2f} ± "
                     f"{p['std']:.2f} {p['metric'].replace('_', ' ')} | {seeds} | "
                     f"{p['settings_ahead']} of {p['settings']} |")
    return "\n".join(lines)


def refinement_summary(per_seed: Sequence[Sequence[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """The feature analysis (:func:`adadet.evaluation.feature_analysis.stage_refinement`)
    of each seed -> per stage the mean and std over seeds of each measure."""
    out = []
    for rows in zip(*per_seed):
        summary: Dict[str, Any] = {"stage": rows[0]["stage"], "skipped_alone": rows[0]["skipped_alone"]}
        for key in ("kl", "cosine", "relative_l2"):
            summary[f"{key}_mean"], summary[f"{key}_std"] = _mean_std([r[key] for r in rows])
        out.append(summary)
    return out


def format_refinement_table(summaries: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """recipe | stage | relative L2 change | cosine | KL, when the stage alone skips."""
    lines = [
        "| recipe | stage | relative L2 change | cosine similarity | KL(full \\|\\| skipped) |",
        "|---|---|---|---|---|",
    ]
    for recipe, rows in summaries.items():
        for r in rows:
            lines.append(
                f"| {recipe} | {r['stage']} | {r['relative_l2_mean']:.3f} ± {r['relative_l2_std']:.3f} | "
                f"{r['cosine_mean']:.3f} ± {r['cosine_std']:.3f} | {r['kl_mean']:.3f} ± {r['kl_std']:.3f} |"
            )
    return "\n".join(lines)


def format_pareto(pareto: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """One line per recipe and metric: the front's settings, its cost ratio and AP lost."""
    lines = []
    for recipe, by_metric in pareto.items():
        for metric, p in by_metric.items():
            if p["front"]:
                lines.append(
                    f"* {recipe}, {metric.replace('_', ' ')}: {' > '.join(reversed(p['front']))}: "
                    f"{p['cost_ratio']:.2f}x {p['cost']} for {p['ap_lost']:.1f} AP")
    return "\n".join(lines)


def format_study_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: recipe | depth | box AP | mask AP (mean ± std) | costs."""
    lines = [
        "| recipe | depth | box AP | mask AP | backbone GFLOPs (224) | detector GFLOPs | "
        "latency (ms) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pm(row, key):
        if f"{key}_mean" not in row:
            return "-"
        return f"{row[key + '_mean']:.1f} ± {row[key + '_std']:.1f}"

    for row in rows:
        lines.append(
            f"| {row['recipe']} | {row['depth']} | {pm(row, 'box_AP')} | {pm(row, 'mask_AP')} | "
            f"{row.get('backbone_gflops_mean', float('nan')):.2f} | "
            f"{row.get('gflops_mean', float('nan')):.2f} | "
            f"{row.get('latency_ms_mean', float('nan')):.1f} | {row['seeds']} |"
        )
    return "\n".join(lines)


#: cost key -> its axis label in the study's plot
COST_LABELS = {
    "gflops": "detector GFLOPs (first image of the split)",
    "backbone_gflops": "backbone GFLOPs (224x224)",
    "latency_ms": "detector CPU latency (ms)",
}


def plot_costs(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """The costs every row has, for the plot's x-axes: the detector's GFLOPs (what a whole
    detector saves; else the backbone's), then its latency."""
    def everywhere(key):
        return rows and all(not math.isnan(r.get(f"{key}_mean", float("nan"))) for r in rows)

    first = "gflops" if everywhere("gflops") else "backbone_gflops"
    return [first] + (["latency_ms"] if everywhere("latency_ms") else [])


def plot_study(rows: Sequence[Mapping[str, Any]], path: str, title: str = "") -> None:
    """AP (mean ± std over seeds) against each cost of :func:`plot_costs` (one row of
    panels per cost), one colour per recipe: every setting a faint point with its error
    bar, the recipe's Pareto front joined and labelled (128 labels would be unreadable)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    metrics = [m for m in METRICS if any(f"{m}_mean" in r for r in rows)]
    costs = plot_costs(rows)
    figure = Figure(figsize=(6 * len(metrics), 4.8 * len(costs)), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(costs), len(metrics), squeeze=False)
    colours = [f"C{i}" for i in range(10)]
    for cost, axes in zip(costs, grid):
        for axis, metric in zip(axes, metrics):
            for recipe, colour in zip(recipes, colours * 3):
                own = [r for r in rows if r["recipe"] == recipe and f"{metric}_mean" in r]
                axis.errorbar([r[f"{cost}_mean"] for r in own], [r[f"{metric}_mean"] for r in own],
                              yerr=[r[f"{metric}_std"] for r in own], fmt="o", ms=3,
                              color=colour, alpha=0.35, capsize=2)
                by_depth = {r["depth"]: r for r in own}
                front = [by_depth[d] for d in pareto_summary(own, metric, cost)["front"]]
                axis.plot([r[f"{cost}_mean"] for r in front], [r[f"{metric}_mean"] for r in front],
                          "-o", color=colour, label=f"{recipe} (Pareto front)")
                for r in front:
                    axis.annotate(r["depth"], (r[f"{cost}_mean"], r[f"{metric}_mean"]),
                                  textcoords="offset points", xytext=(3, -10), fontsize=7,
                                  color=colour)
            axis.set_xlabel(COST_LABELS[cost])
            axis.set_ylabel(f"{metric.replace('_', ' ')} (mean ± std over seeds)")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def runs_from_report(
    report: Mapping[str, Any], recipe: str, seeds: Sequence[int]
) -> List[List[Dict[str, Any]]]:
    """The runs of ``recipe`` (e.g. ``"sandwich/trained"``) kept in a report that
    :func:`write_study` wrote, for ``seeds`` in that order, in the shape of
    :func:`aggregate_runs`' input: each seed's AP per setting (``<metric>_per_seed``), the
    costs as their means. Lets a later study pair new recipes with it by seed without
    retraining it; that is only sound where a rerun of that recipe reproduces it."""
    stored_seeds = list(report["info"]["seeds"])
    rows = [r for r in report["rows"] if r["recipe"] == recipe]
    if not rows:
        known = sorted({r["recipe"] for r in report["rows"]})
        raise ValueError(f"{recipe!r} is not in the report; it has {known}")
    if not any(f"{m}_per_seed" in r for m in METRICS for r in rows):
        raise ValueError(f"the report keeps no per-seed AP of {recipe!r} (it predates "
                         "<metric>_per_seed): train that recipe again instead")
    missing = [s for s in seeds if s not in stored_seeds]
    if missing:
        raise ValueError(f"{recipe!r} was run with seeds {stored_seeds}, not {missing}: "
                         "pair it by the seeds it has (--seeds)")
    runs = []
    for seed in seeds:
        i = stored_seeds.index(seed)
        runs.append([
            {"depth": r["depth"],
             **{m: r[f"{m}_per_seed"][i] for m in METRICS if f"{m}_per_seed" in r},
             **{c: r[f"{c}_mean"] for c in COSTS if f"{c}_mean" in r}}
            for r in rows
        ])
    return runs


def write_study(
    rows: Sequence[Mapping[str, Any]], output_dir: str, name: str, info: Mapping[str, Any]
) -> Dict[str, str]:
    """``<name>.json`` (rows, per-recipe checks, ``info``), ``.csv``, ``.md`` and ``.png``."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {ext: os.path.join(output_dir, f"{name}.{ext}") for ext in ("json", "csv", "md", "png")}
    recipes = list(dict.fromkeys(r["recipe"] for r in rows))
    checks = {
        recipe: {m: claim_checks([r for r in rows if r["recipe"] == recipe], m)
                 for m in METRICS if all(f"{m}_mean" in r for r in rows if r["recipe"] == recipe)}
        for recipe in recipes
    }
    cost = plot_costs(rows)[0]
    pareto = {
        recipe: {m: pareto_summary([r for r in rows if r["recipe"] == recipe], m, cost)
                 for m in checks[recipe]}
        for recipe in recipes
    }
    with open(paths["json"], "w") as f:
        json.dump({"info": dict(info), "rows": list(rows), "checks": checks, "pareto": pareto},
                  f, indent=1)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with open(paths["md"], "w") as f:
        f.write(format_study_table(rows) + "\n")
        f.write(f"\nPareto fronts ({COST_LABELS[cost]} against AP, means over seeds; "
                "cheapest first):\n\n" + format_pareto(pareto) + "\n")
        if info.get("paired"):
            f.write("\nPaired by seed (the same initial weights and image order):\n\n")
            f.write(format_paired_table(info["paired"]) + "\n")
        if info.get("depth_gap"):
            f.write("\nWhat depth buys, per seed (the same model at both settings):\n\n")
            for recipe, g in info["depth_gap"].items():
                seeds = " / ".join(f"{d:+.2f}" for d in g["per_seed"])
                f.write(f"* {recipe}: {g['dearer']} - {g['cheaper']} {g['mean']:+.2f} ± "
                        f"{g['std']:.2f} {g['metric'].replace('_', ' ')} (per seed {seeds})\n")
        if info.get("inversions"):
            f.write("\nStrictly cheaper settings ahead of dearer ones in every seed "
                    "(the same model at both):\n\n")
            for recipe, by_metric in info["inversions"].items():
                for metric, inv in by_metric.items():
                    listed = ", ".join(
                        f"{v['cheaper']} over {v['dearer']} {v['mean']:+.2f}"
                        for v in inv["inversions"]
                    )
                    f.write(f"* {recipe}, {metric.replace('_', ' ')}: {len(inv['inversions'])} "
                            f"of {inv['pairs']} pairs" + (f" ({listed})" if listed else "") + "\n")
        if info.get("refinement"):
            f.write("\nWhen a stage alone skips its skippable sub-path, its output moves by:\n\n")
            f.write(format_refinement_table(info["refinement"]) + "\n")
    plot_study(rows, paths["png"], title=info.get("title", ""))
    return paths
