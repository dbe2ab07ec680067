"""The per-depth evaluation report: a table in the log, ``depth_eval.json`` / ``.csv`` and a
Pareto plot (AP against GFLOPs and against latency, one point per setting; every point
labelled up to 16 settings, the Pareto front's beyond)."""
import csv
import json
import logging
import os
from typing import Any, Dict, List, Mapping

from tabulate import tabulate

# Detectron2's COCOEvaluator task names -> the prefix used in the report.
TASKS = {"bbox": "box", "segm": "mask"}
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
COST_COLUMNS = ("gflops", "backbone_gflops", "params_m", "latency_ms")
REPORT_NAME = "depth_eval"
#: report_rows' columns of the detector's GFLOPs per part: "gflops_in_fpn", ...
PART_PREFIX = "gflops_in_"

logger = logging.getLogger(__name__)


def report_rows(results: Mapping[str, Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """One flat row per depth setting: depth, box_AP..., mask_AP..., gflops, params_m,
    latency_ms, then the detector's GFLOPs per part (``gflops_in_backbone``, ...)."""
    rows = []
    for depth, per_depth in results.items():
        row: Dict[str, Any] = {"depth": depth}
        for task, prefix in TASKS.items():
            for metric in METRICS:
                if task in per_depth and metric in per_depth[task]:
                    row[f"{prefix}_{metric}"] = float(per_depth[task][metric])
        for column in COST_COLUMNS:
            if column in per_depth["cost"]:
                row[column] = float(per_depth["cost"][column])
        # the whole detector's GFLOPs per part (backbone, fpn, rpn, ...): JSON and CSV only
        for part, gflops in per_depth["cost"].get("gflops_by_part", {}).items():
            row[f"{PART_PREFIX}{part}"] = float(gflops)
        rows.append(row)
    return rows


def format_table(rows: List[Dict[str, Any]]) -> str:
    columns = [c for c in rows[0] if not c.startswith(PART_PREFIX)]
    headers = [c.replace("_", " ").replace("backbone gflops", "backbone GFLOPs (224)").replace("gflops", "GFLOPs").replace("params m", "params (M)")
               .replace("latency ms", "latency (ms)") for c in columns]
    return tabulate([[row.get(c) for c in columns] for row in rows], headers=headers,
                    tablefmt="pipe", floatfmt=".2f")


def write_report(rows: List[Dict[str, Any]], output_dir: str, *, device: str, dataset: str) -> Dict[str, str]:
    """Write ``depth_eval.json``, ``depth_eval.csv`` and ``depth_eval_pareto.png``; returns paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "json": os.path.join(output_dir, REPORT_NAME + ".json"),
        "csv": os.path.join(output_dir, REPORT_NAME + ".csv"),
        "plot": os.path.join(output_dir, REPORT_NAME + "_pareto.png"),
    }
    with open(paths["json"], "w") as f:
        json.dump({"dataset": dataset, "device": device, "depths": rows}, f, indent=2)
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    plot_pareto(rows, paths["plot"], title=f"{dataset} on {device}")
    return paths


def report_depth_results(
    results: Mapping[str, Mapping[str, Any]], output_dir: str, *, device: str, dataset: str
) -> Dict[str, str]:
    """Log the table of ``evaluate_depths``' results and write the report files (the end of
    every per-depth evaluation, YACS or lazy); returns the paths written."""
    rows = report_rows(results)
    paths = write_report(rows, output_dir, device=device, dataset=dataset)
    logger.info(
        f"Evaluation of {len(rows)} depth settings on {dataset} (latency: median per image on "
        f"{device}):\n{format_table(rows)}\nWritten: " + ", ".join(paths.values())
    )
    return paths


def pareto_front(points: List[tuple]) -> List[int]:
    """Indices of the points (cost, accuracy) that no other point beats on both, by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for index in order:
        if points[index][1] > best:
            front.append(index)
            best = points[index][1]
    return front


#: Up to this many settings, every point of the plot is labelled; beyond, the front only.
MAX_LABELLED_POINTS = 16


def labelled_points(points: List[tuple]) -> List[int]:
    """Indices of the points to name in the plot: all of them, or the Pareto front when
    there are more than :data:`MAX_LABELLED_POINTS` (128 whole-detector settings would
    be unreadable)."""
    if len(points) <= MAX_LABELLED_POINTS:
        return list(range(len(points)))
    return sorted(pareto_front(points))


def plot_pareto(rows: List[Dict[str, Any]], path: str, title: str = "") -> None:
    # Figure + Agg canvas: no global pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = [m for m in ("box_AP", "mask_AP") if m in rows[0]]
    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    for axis, (cost, label) in zip(
        figure.subplots(1, 2), [("gflops", "GFLOPs (whole detector)"), ("latency_ms", "latency per image (ms)")]
    ):
        for metric, marker in zip(metrics, ("o", "s")):
            points = [(row[cost], row[metric]) for row in rows]
            axis.scatter(*zip(*points), marker=marker, label=metric.replace("_", " "))
            front = pareto_front(points)
            axis.plot([points[i][0] for i in front], [points[i][1] for i in front], alpha=0.5)
            for index in labelled_points(points):
                axis.annotate(rows[index]["depth"], points[index], textcoords="offset points",
                              xytext=(4, 4), fontsize=8)
        axis.set_xlabel(label)
        axis.set_ylabel("AP")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
