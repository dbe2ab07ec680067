"""``TEST.EXPECTED_RESULTS`` for per-depth results.

Detectron2's ``verify_results`` expects ``{task: {metric: value}}``; adadet's evaluation
gives ``{depth: {task: {metric: value}, "cost": {...}}}`` (``ADNTrainer.test``). An expected
entry ``[task, metric, value, tolerance]`` names its depth in the task: ``"TTTT/bbox"``
(aliases allowed: ``"base/bbox"``); a task without a depth (``"bbox"``) is checked at
``MODEL.ADN.DEPTH``. With several test datasets the task is ``"<depth>/<dataset>/bbox"``.
"""
import logging
import math
import pprint
import sys
from collections.abc import Mapping
from typing import List, Optional, Tuple

from ..depth import DepthLayout
from ..modeling.adaptive_parts import config_depth_layout

__all__ = ["verify_depth_results"]

logger = logging.getLogger(__name__)


def _split_depth(task: str, layout: DepthLayout) -> Tuple[Optional[str], List[str]]:
    """(depth named at the start of ``task`` or None, the task's path after it)."""
    parts = task.split("/")
    if len(parts) > 1:
        try:
            return layout.normalize(parts[0]), parts[1:]
        except (ValueError, TypeError):
            pass
    return None, parts


def verify_depth_results(cfg, results, *, exit_on_failure: bool = True) -> bool:
    """Check ``results`` (``{depth: {task: {metric: value}}}``) against
    ``cfg.TEST.EXPECTED_RESULTS`` (``[["TTTT/bbox", "AP", 38.5, 0.2], ["bbox", "AP", ...]]``).

    As Detectron2's ``verify_results``: a metric that is missing, not finite or off by
    more than its tolerance fails the check, which is logged (each failing entry, then the
    results) and, with ``exit_on_failure``, ends the process with exit status 1; returns
    whether all entries passed. An entry whose depth was not evaluated, or whose task is
    not in the results, is a mistake in the config: ValueError naming what was evaluated.
    """
    expected_results = cfg.TEST.EXPECTED_RESULTS
    if not len(expected_results):
        return True
    if not results:
        raise ValueError(
            f"TEST.EXPECTED_RESULTS is {list(expected_results)}, but nothing was evaluated "
            "(DATASETS.TEST is empty?). Fix: give DATASETS.TEST, or TEST.EXPECTED_RESULTS []."
        )
    evaluated = list(results)
    layout = config_depth_layout(cfg)
    default_depth = layout.normalize(cfg.MODEL.ADN.DEPTH)
    failures = []
    for entry in expected_results:
        if len(entry) != 4:
            raise ValueError(
                f"TEST.EXPECTED_RESULTS entry {list(entry)} is not [task, metric, expected, "
                "tolerance], e.g. ['TTTT/bbox', 'AP', 38.5, 0.2]."
            )
        task, metric, expected, tolerance = entry
        depth, path = _split_depth(str(task), layout)
        if depth is None:
            depth = default_depth
            how = f"MODEL.ADN.DEPTH ({cfg.MODEL.ADN.DEPTH!r}), as the task names no depth"
        else:
            how = "named in the task"
        if depth not in results:
            raise ValueError(
                f"TEST.EXPECTED_RESULTS entry {list(entry)} is for depth {depth} ({how}), "
                f"which was not evaluated; evaluated depths: {evaluated} (TEST.ADN.DEPTHS). "
                f"Fix: add {depth} to TEST.ADN.DEPTHS, or name an evaluated depth in the task, "
                f"e.g. '{evaluated[0]}/{'/'.join(path)}'."
            )
        node = results[depth]
        for index, part in enumerate(path):
            if not isinstance(node, Mapping) or part not in node:
                available = [k for k in node if k != "cost"] if isinstance(node, Mapping) else []
                raise ValueError(
                    f"TEST.EXPECTED_RESULTS entry {list(entry)}: no task "
                    f"'{'/'.join(path[: index + 1])}' in the results of depth {depth}; they "
                    f"have {available}. Fix: name one of those (e.g. '{depth}/"
                    f"{available[0] if available else 'bbox'}')."
                )
            node = node[part]
        actual = node.get(metric) if isinstance(node, Mapping) else None
        name = f"{depth}/{'/'.join(path)} {metric}"
        if actual is None:
            have = list(node) if isinstance(node, Mapping) else []
            failures.append(f"{name}: missing (the task has {have[:12]})")
        elif not math.isfinite(float(actual)):
            failures.append(f"{name}: {actual}, not finite")
        elif abs(float(actual) - float(expected)) > float(tolerance):
            failures.append(
                f"{name}: {float(actual):.4f}, expected {expected} +- {tolerance} "
                f"(off by {abs(float(actual) - float(expected)):.4f})"
            )
    if failures:
        logger.error(
            "Result verification failed (TEST.EXPECTED_RESULTS):\n  - " + "\n  - ".join(failures)
        )
        logger.error("Actual results: " + pprint.pformat(results))
        if exit_on_failure:
            sys.exit(1)
        return False
    logger.info(f"Results verification passed ({len(expected_results)} expected results).")
    return True
