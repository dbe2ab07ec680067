"""Choose the depth setting to deploy from a per-depth evaluation (``depth_eval.json``).

Rules (deterministic, so the same table and limits always give the same answer):

* With a cost limit (``max_latency_ms`` and/or ``max_gflops``, optionally ``min_ap`` too):
  among the settings within every limit, the one with the highest AP; equal AP (within
  ``ap_tolerance`` points of the best) goes to the faster one, then the one with fewer
  GFLOPs, then the one that skips more stages, then the name.
* With ``min_ap`` alone: the cheapest setting that reaches it, i.e. the lowest latency,
  then fewest GFLOPs, then highest AP, then more skipped stages, then the name.

When nothing fits, :class:`NoDepthFits` says which limit excluded which settings and
which setting came closest (smallest summed relative excess over the limits).
"""
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

Row = Mapping[str, Any]


@dataclass(frozen=True)
class DepthBudget:
    """Limits a deployment must meet. ``metric`` is the AP column ``min_ap`` and the ranking
    use (``box_AP``, ``mask_AP``, or any AP column of the table, e.g. ``box_AP50``)."""

    max_latency_ms: Optional[float] = None
    max_gflops: Optional[float] = None
    min_ap: Optional[float] = None
    metric: str = "box_AP"
    ap_tolerance: float = 0.0

    def __post_init__(self):
        """Refuse limits no measurement can be held to (NaN compares false with everything,
        so ``latency <= nan`` used to let every setting through)."""
        checks = (
            ("max_latency_ms", self.max_latency_ms, "a latency in ms, e.g. 50"),
            ("max_gflops", self.max_gflops, "GFLOPs per image, e.g. 120"),
            ("min_ap", self.min_ap, "an AP in COCO percent, 0 to 100, e.g. 35"),
            ("ap_tolerance", self.ap_tolerance, "AP points, e.g. 0.5"),
        )
        for name, value, meaning in checks:
            if value is None and name != "ap_tolerance":
                continue
            number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            top = 100.0 if name == "min_ap" else math.inf
            if number is None or not math.isfinite(number) or not 0 <= number <= top:
                raise ValueError(
                    f"Invalid limit {name} = {value!r}: give {meaning} (a finite number, "
                    f"not negative{', at most 100' if name == 'min_ap' else ''})."
                )

    @property
    def has_cost_limit(self) -> bool:
        return self.max_latency_ms is not None or self.max_gflops is not None

    def limits(self) -> List[Tuple[str, float, str, str, int]]:
        """(column, limit, label, unit, sign) of each limit set; sign +1: an upper limit."""
        limits = (
            ("latency_ms", self.max_latency_ms, "latency", " ms", +1),
            ("gflops", self.max_gflops, "GFLOPs", "", +1),
            (self.metric, self.min_ap, self.metric, "", -1),
        )
        return [limit for limit in limits if limit[1] is not None]

    def describe(self) -> str:
        return ", ".join(_limit_text(*limit) for limit in self.limits())


@dataclass
class DepthSelection:
    best: Row
    budget: DepthBudget
    rule: str
    runner_up: Optional[Row] = None
    #: why the best beat settings ranked level with it on the first criterion (None: no tie)
    tie_break: Optional[str] = None
    #: depth -> the limits it breaks, for every setting that does not fit
    excluded: Dict[str, List[str]] = field(default_factory=dict)
    source: Dict[str, Any] = field(default_factory=dict)


class NoDepthFits(Exception):
    """No setting of the table meets every limit. ``excluded`` maps each depth to the
    limits it breaks; ``closest`` is the row that misses them by the least."""

    def __init__(self, message: str, excluded: Dict[str, List[str]], closest: Optional[Row]):
        super().__init__(message)
        self.excluded = excluded
        self.closest = closest


def load_depth_table(path: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """The rows of a ``depth_eval.json`` and its other fields (dataset, device)."""
    if os.path.isdir(path):
        inside = os.path.join(path, "depth_eval.json")
        hint = f" ({inside} is there)" if os.path.isfile(inside) else ""
        raise ValueError(
            f"{path} is a directory: give the depth_eval.json file of the per-depth "
            f"evaluation, e.g. {inside}{hint}."
        )
    try:
        with open(path) as f:
            report = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: run the per-depth evaluation first "
            "(tools/train_net.py --eval-only ... writes OUTPUT_DIR/depth_eval.json)."
        ) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file: give the depth_eval.json report.") from None
    except OSError as e:
        raise ValueError(f"{path} cannot be read ({e.strerror or e}).") from None
    rows = report.get("depths") if isinstance(report, dict) else None
    if not isinstance(rows, list):  # the rows themselves are checked by select_depth
        raise ValueError(
            f"{path} is not a per-depth evaluation report: expected "
            '{"depths": [{"depth": "FFFF", "box_AP": ..., "gflops": ..., "latency_ms": ...}, ...]}.'
        )
    source = {k: v for k, v in report.items() if k != "depths"}
    source["path"] = path
    return rows, source


def _number(row: Row, key: str) -> float:
    """The value as a float; NaN when missing or not a number (e.g. latency not measured)."""
    value = row.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _limit_text(key, limit, label, unit, sign) -> str:
    return f"{label} {'<=' if sign > 0 else '>='} {limit:g}{unit}"


def _violations(row: Row, budget: DepthBudget) -> Tuple[List[str], float]:
    """The limits this row breaks, human-readable (a missing measurement breaks its limit),
    and by how much: the sum of the relative excesses (0: fits; inf: a limit not measured)."""
    broken, excess = [], 0.0
    if budget.min_ap is None and math.isnan(_number(row, budget.metric)):
        broken.append(f"{budget.metric} not measured")  # cannot be ranked by it
    for key, limit, label, unit, sign in budget.limits():
        value = _number(row, key)
        miss = (value - limit) * sign
        if math.isnan(value):
            broken.append(f"{label} not measured")
            excess = math.inf
        elif miss > 0:
            broken.append(f"{label} {value:.2f}{unit} {'>' if sign > 0 else '<'} {limit:g}{unit}")
            excess += miss / max(abs(limit), 1e-9)
    return broken, excess


def _cost_key(row: Row) -> Tuple:
    # NaN latency sorts last; fewer GFLOPs, then more skipped stages, then the name.
    latency = _number(row, "latency_ms")
    return (
        math.isnan(latency),
        latency if not math.isnan(latency) else 0.0,
        _number(row, "gflops"),
        -row["depth"].count("T"),  # more skipped stages
        row["depth"],
    )


def _check_table(rows: Sequence[Row], metric: str, where: str) -> None:
    """There are rows; every row's depth is a depth setting ('TFFF'), all of one length,
    none twice; ``metric`` has a value in some row and is a column of all."""
    if not rows:
        raise ValueError(f"{where} lists no depth settings: use the depth_eval.json of a "
                         "per-depth evaluation (tools/train_net.py --eval-only writes it).")
    lengths = set()
    for index, row in enumerate(rows):
        depth = row.get("depth") if isinstance(row, Mapping) else None
        if not (isinstance(depth, str) and depth and set(depth) <= {"T", "F"}):
            raise ValueError(
                f"{where}: row {index} has depth {depth!r}, which is not a depth setting "
                "(one letter per stage, 'T' or 'F', e.g. 'TFFF'). Fix or regenerate the table "
                "(tools/train_net.py --eval-only writes it)."
            )
        lengths.add(len(depth))
    names = [row["depth"] for row in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if len(lengths) > 1 or duplicates:
        problem = (
            f"settings of different lengths ({sorted(lengths)} letters)"
            if len(lengths) > 1
            else f"{duplicates} more than once"
        )
        raise ValueError(
            f"{where}: the table lists {problem}: it mixes evaluations. Use the "
            "depth_eval.json of one evaluation run."
        )
    if not all(metric in row for row in rows):
        available = sorted({k for row in rows for k in row if "AP" in k})
        raise ValueError(
            f"The table has no {metric!r} for every setting; its AP columns are {available}. "
            "(mask_AP needs a Mask R-CNN evaluated with segm.)"
        )
    if all(math.isnan(_number(row, metric)) for row in rows):
        measured = sorted(
            {k for row in rows for k in row if "AP" in k and not math.isnan(_number(row, k))}
        )
        raise ValueError(
            f"The table's {metric!r} is NaN (not measured) for every setting, so it cannot "
            f"rank them (COCO gives NaN for an area range without objects, e.g. box_APl on "
            f"small images). Choose another --metric; columns with values: {measured}."
        )


def select_depth(
    rows: Sequence[Row], budget: DepthBudget, source: Optional[Dict[str, Any]] = None
) -> DepthSelection:
    """The best setting of ``rows`` under ``budget`` (rules in the module docstring).

    Raises:
        ValueError: no limit given, a malformed table, or a metric it does not measure.
        NoDepthFits: no setting meets every limit.
    """
    if not budget.has_cost_limit and budget.min_ap is None:
        raise ValueError("Give at least one limit: max_latency_ms, max_gflops or min_ap.")
    _check_table(rows, budget.metric, (source or {}).get("path", "the table"))
    violations = {r["depth"]: _violations(r, budget) for r in rows}
    excluded = {depth: broken for depth, (broken, _) in violations.items() if broken}
    fitting = [r for r in rows if r["depth"] not in excluded]
    if not fitting:
        closest = min(rows, key=lambda r: (violations[r["depth"]][1], _cost_key(r)))
        raise NoDepthFits(_no_fit_message(rows, budget, excluded, closest), excluded, closest)

    metric = budget.metric
    if budget.has_cost_limit:
        rule = f"highest {metric} among the settings within {budget.describe()}"
        best_ap = max(_number(r, metric) for r in fitting)
        # The top group: AP level with the best (within the tolerance); cheapest wins there.
        top = sorted((r for r in fitting if _number(r, metric) >= best_ap - budget.ap_tolerance),
                     key=_cost_key)
        rest = sorted((r for r in fitting if r not in top), key=lambda r: (-_number(r, metric), _cost_key(r)))
        ranked = top + rest
        tie_break = None
        if len(top) > 1:
            level = (
                f"within {budget.ap_tolerance:g} points of the best {metric}"
                if budget.ap_tolerance
                else f"the same {metric} ({best_ap:.2f})"
            )
            tie_break = (
                f"{', '.join(r['depth'] for r in top)} have {level}; "
                f"{ranked[0]['depth']} is the cheapest of them "
                "(lowest latency, then fewest GFLOPs, then most skipped stages, then name)"
            )
    else:
        rule = f"cheapest setting (lowest latency, then fewest GFLOPs) with {metric} >= {budget.min_ap:g}"
        ranked = sorted(
            fitting,
            key=lambda r: _cost_key(r)[:3] + (-_number(r, metric),) + _cost_key(r)[3:],
        )
        first = ranked[0]
        level = [r for r in ranked if _cost_key(r)[:2] == _cost_key(first)[:2]]
        tie_break = None
        if len(level) > 1:
            tie_break = (
                f"{', '.join(r['depth'] for r in level)} have the same latency "
                f"({_number(first, 'latency_ms'):.2f} ms); {first['depth']} wins on "
                "fewer GFLOPs, then higher AP, then more skipped stages, then name"
            )
    return DepthSelection(
        best=ranked[0],
        budget=budget,
        rule=rule,
        runner_up=ranked[1] if len(ranked) > 1 else None,
        tie_break=tie_break,
        excluded=excluded,
        source=dict(source or {}),
    )


def _summary(row: Row, metric: str) -> str:
    return (
        f"{row['depth']} ({metric} {_number(row, metric):.2f}, "
        f"{_number(row, 'latency_ms'):.2f} ms, {_number(row, 'gflops'):.2f} GFLOPs)"
    )


def _no_fit_message(rows, budget: DepthBudget, excluded, closest) -> str:
    lines = [f"No depth setting fits {budget.describe()} ({len(rows)} settings in the table)."]
    for limit in budget.limits():
        label = limit[2]
        out = [d for d, broken in excluded.items() if any(b.startswith(label + " ") for b in broken)]
        lines.append(f"  {_limit_text(*limit)} excludes {len(out)}: {', '.join(out) if out else 'none'}")
    lines.append(
        f"  closest: {_summary(closest, budget.metric)}: {'; '.join(excluded[closest['depth']])}"
    )
    return "\n".join(lines)


def format_selection(selection: DepthSelection) -> str:
    """The choice and why: its numbers against the limits, the runner-up, ties, exclusions."""
    budget, best, metric = selection.budget, selection.best, selection.budget.metric
    lines = [f"Selected depth: {best['depth']}", f"  {_summary(best, metric)}"]
    lines.append(f"  rule: {selection.rule}")
    for key, limit, label, unit, sign in budget.limits():
        value = _number(best, key)
        margin = (limit - value) * sign
        spare = f"{margin:.2f}{unit} spare" if sign > 0 else f"{margin:+.2f}"
        lines.append(f"  limit: {label} {value:.2f}{unit} {'<=' if sign > 0 else '>='} {limit:g}{unit} ({spare})")
    if selection.tie_break:
        lines.append(f"  tie: {selection.tie_break}")
    runner = selection.runner_up
    if runner is not None:
        d_ap = _number(runner, metric) - _number(best, metric)
        d_lat = _number(runner, "latency_ms") - _number(best, "latency_ms")
        d_fl = _number(runner, "gflops") - _number(best, "gflops")
        lines.append(
            f"  runner-up: {_summary(runner, metric)}: {metric} {d_ap:+.2f}, "
            f"latency {d_lat:+.2f} ms, GFLOPs {d_fl:+.2f} vs {best['depth']}"
        )
    else:
        lines.append("  runner-up: none (no other setting fits)")
    if selection.excluded:
        lines.append(f"  excluded ({len(selection.excluded)}):")
        for depth, broken in selection.excluded.items():
            lines.append(f"    {depth}: {'; '.join(broken)}")
    source = selection.source
    if source:
        lines.append(
            f"  table: {source.get('path', '?')} (dataset {source.get('dataset', '?')}, "
            f"latency measured on {source.get('device', '?')}: latency limits hold for that device)"
        )
    return "\n".join(lines)


def selection_to_dict(selection: DepthSelection) -> Dict[str, Any]:
    return {
        "depth": selection.best["depth"],
        "selected": dict(selection.best),
        "rule": selection.rule,
        "tie_break": selection.tie_break,
        "runner_up": dict(selection.runner_up) if selection.runner_up else None,
        "excluded": selection.excluded,
        "limits": asdict(selection.budget),
        "source": selection.source,
    }
