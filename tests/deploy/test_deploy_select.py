"""Choosing a depth under a budget: fits, ties, no fit, --min-ap alone, the CLI."""
import json

import pytest

from adadet.deploy.select import DepthBudget, NoDepthFits, format_selection, select_depth
from adn_testing import load_tool


def row(depth, box_ap, latency, gflops, mask_ap=None):
    out = {"depth": depth, "box_AP": box_ap, "gflops": gflops, "params_m": 30.0, "latency_ms": latency}
    if mask_ap is not None:
        out["mask_AP"] = mask_ap
    return out


# A synthetic table: each skipped stage costs AP and saves time and FLOPs.
TABLE = [
    row("FFFF", 40.0, 100.0, 200.0, mask_ap=36.0),
    row("TFFF", 39.0, 90.0, 180.0, mask_ap=35.5),
    row("FTFF", 39.0, 88.0, 181.0, mask_ap=35.0),  # same box AP as TFFF, faster
    row("TTFF", 37.5, 80.0, 160.0, mask_ap=34.0),
    row("TTTF", 36.0, 70.0, 140.0, mask_ap=33.0),
    row("TTTT", 34.0, 60.0, 120.0, mask_ap=31.0),
]


def test_highest_ap_within_the_cost_limits():
    selection = select_depth(TABLE, DepthBudget(max_latency_ms=85, max_gflops=170))
    assert selection.best["depth"] == "TTFF"
    assert selection.runner_up["depth"] == "TTTF"
    assert set(selection.excluded) == {"FFFF", "TFFF", "FTFF"}
    assert selection.excluded["FFFF"] == ["latency 100.00 ms > 85 ms", "GFLOPs 200.00 > 170"]
    text = format_selection(selection)
    assert "Selected depth: TTFF" in text
    assert "latency 80.00 ms <= 85 ms (5.00 ms spare)" in text
    assert "runner-up: TTTF" in text


def test_a_limit_on_the_boundary_fits():
    assert select_depth(TABLE, DepthBudget(max_latency_ms=80.0)).best["depth"] == "TTFF"


def test_equal_ap_goes_to_the_faster_setting_whatever_the_row_order():
    budget = DepthBudget(max_latency_ms=95)
    for rows in (TABLE, TABLE[::-1]):
        selection = select_depth(rows, budget)
        assert selection.best["depth"] == "FTFF"  # 39.0 like TFFF, 88 ms < 90 ms
        assert selection.runner_up["depth"] == "TFFF"
        assert "FTFF is the cheapest" in selection.tie_break


def test_full_tie_falls_back_to_more_skipped_stages_then_the_name():
    rows = [row("FTFF", 38.0, 50.0, 100.0), row("TFFF", 38.0, 50.0, 100.0), row("TTFF", 38.0, 50.0, 100.0)]
    selection = select_depth(rows, DepthBudget(max_gflops=150))
    assert selection.best["depth"] == "TTFF"
    assert selection.runner_up["depth"] == "FTFF"  # name order between equal skips


def test_ap_tolerance_lets_a_cheaper_setting_win():
    budget = DepthBudget(max_latency_ms=200, ap_tolerance=1.0)
    selection = select_depth(TABLE, budget)
    # FFFF (40.0) is best; TFFF and FTFF (39.0) are within 1 point and cheaper; FTFF is fastest.
    assert selection.best["depth"] == "FTFF"
    assert "within 1 points" in selection.tie_break


def test_min_ap_alone_picks_the_cheapest_that_reaches_it():
    selection = select_depth(TABLE, DepthBudget(min_ap=37.0))
    assert selection.best["depth"] == "TTFF"
    assert selection.runner_up["depth"] == "FTFF"
    assert selection.excluded == {"TTTF": ["box_AP 36.00 < 37"], "TTTT": ["box_AP 34.00 < 37"]}
    assert "cheapest" in selection.rule


def test_mask_ap_metric():
    selection = select_depth(TABLE, DepthBudget(min_ap=35.2, metric="mask_AP"))
    assert selection.best["depth"] == "TFFF"  # FTFF is faster but its mask AP is 35.0


def test_no_fit_names_the_limits_and_the_closest():
    with pytest.raises(NoDepthFits) as raised:
        select_depth(TABLE, DepthBudget(max_latency_ms=65, min_ap=38.0))
    error = raised.value
    assert error.closest["depth"] == "TTTT"  # 60 ms fits, 34 AP misses by 4 points
    assert set(error.excluded) == {row["depth"] for row in TABLE}
    message = str(error)
    assert "latency <= 65 ms excludes 5: FFFF, TFFF, FTFF, TTFF, TTTF" in message
    assert "box_AP >= 38 excludes 3: TTFF, TTTF, TTTT" in message
    assert "closest: TTTT" in message


def test_unmeasured_latency_does_not_fit_a_latency_limit():
    rows = [row("FFFF", 40.0, float("nan"), 200.0), row("TTTT", 34.0, 60.0, 120.0)]
    selection = select_depth(rows, DepthBudget(max_latency_ms=1000))
    assert selection.best["depth"] == "TTTT"
    assert selection.excluded == {"FFFF": ["latency not measured"]}


def test_errors_for_a_missing_metric_or_no_limit():
    with pytest.raises(ValueError, match="no 'mask_AP'"):
        select_depth([row("FFFF", 40.0, 100.0, 200.0)], DepthBudget(min_ap=30, metric="mask_AP"))
    with pytest.raises(ValueError, match="at least one limit"):
        select_depth(TABLE, DepthBudget())


@pytest.fixture
def table_file(tmp_path):
    path = tmp_path / "depth_eval.json"
    path.write_text(json.dumps({"dataset": "synthetic", "device": "cpu (2 threads)", "depths": TABLE}))
    return str(path)


def test_cli_prints_the_choice(table_file, capsys):
    tool = load_tool("select_depth")
    assert tool.main([table_file, "--max-latency-ms", "85"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Selected depth: TTFF")
    assert "latency measured on cpu (2 threads)" in out

    assert tool.main([table_file, "--min-ap", "37", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["depth"] == "TTFF"


def test_cli_exits_1_with_the_reason_when_nothing_fits(table_file, capsys):
    tool = load_tool("select_depth")
    assert tool.main([table_file, "--max-gflops", "100"]) == 1
    err = capsys.readouterr().err
    assert "No depth setting fits GFLOPs <= 100" in err
    assert "closest: TTTT" in err and "GFLOPs 120.00 > 100" in err


def test_cli_usage_errors(table_file, tmp_path, capsys):
    tool = load_tool("select_depth")
    with pytest.raises(SystemExit) as raised:
        tool.main([table_file])
    assert raised.value.code == 2
    assert tool.main([str(tmp_path / "missing.json"), "--min-ap", "1"]) == 2
    assert "run the per-depth evaluation first" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["nan", "inf", "-5"])
def test_cli_refuses_a_limit_that_is_nan_infinite_or_negative(table_file, capsys, limit):
    # --max-latency-ms nan used to select FFFF and print "<= nan ms".
    tool = load_tool("select_depth")
    for flag in ("--max-latency-ms", "--max-gflops", "--min-ap"):
        with pytest.raises(SystemExit) as raised:
            tool.main([table_file, flag, limit])
        assert raised.value.code == 2
        err = capsys.readouterr().err
        assert f"{flag} {float(limit)!r}: give " in err and "a finite number, not negative" in err
    with pytest.raises(ValueError, match=r"Invalid limit max_latency_ms = nan: give a latency"):
        DepthBudget(max_latency_ms=float("nan"))
    with pytest.raises(ValueError, match="at most 100"):
        DepthBudget(min_ap=350)


def test_a_metric_with_no_value_is_refused_and_partly_missing_values_are_excluded(capsys):
    rows = [dict(r, box_APl=float("nan")) for r in TABLE]
    with pytest.raises(ValueError, match=r"'box_APl' is NaN \(not measured\) for every setting.*"
                       r"Choose another --metric; columns with values: \['box_AP', 'mask_AP'\]"):
        select_depth(rows, DepthBudget(max_latency_ms=200, metric="box_APl"))
    rows[0]["box_APl"], rows[3]["box_APl"] = float("nan"), 20.0
    rows[1]["box_APl"] = 30.0
    selection = select_depth(rows, DepthBudget(max_latency_ms=200, metric="box_APl"))
    assert selection.best["depth"] == "TFFF"  # FFFF's box_APl is unknown: not ranked first
    assert selection.excluded["FFFF"] == ["box_APl not measured"]


@pytest.mark.parametrize("bad", ["TXTT", "", None, 7, "TTT"])
def test_rows_that_are_not_depth_settings_are_refused(tmp_path, capsys, bad):
    rows = [dict(r) for r in TABLE]
    rows[2]["depth"] = bad
    path = tmp_path / "depth_eval.json"
    path.write_text(json.dumps({"depths": rows}))
    with pytest.raises(ValueError, match=str(path)):
        select_depth(rows, DepthBudget(max_latency_ms=200), {"path": str(path)})
    assert load_tool("select_depth").main([str(path), "--max-latency-ms", "1000"]) == 2
    err = capsys.readouterr().err
    if bad == "TTT":
        assert "settings of different lengths ([3, 4] letters)" in err
    else:
        assert f"row 2 has depth {bad!r}, which is not a depth setting" in err
    rows[2]["depth"] = "FFFF"
    with pytest.raises(ValueError, match=r"\['FFFF'\] more than once"):
        select_depth(rows, DepthBudget(max_latency_ms=200))


def test_cli_on_a_directory_says_which_file_to_give(table_file, tmp_path, capsys):
    tool = load_tool("select_depth")
    assert tool.main([str(tmp_path), "--min-ap", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a directory: give the depth_eval.json file" in err
    assert f"({table_file} is there)" in err


def test_cli_exit_1_means_nothing_fits_only(table_file, capsys, monkeypatch):
    tool = load_tool("select_depth")

    def broken(*args, **kwargs):
        raise KeyError("an unexpected failure")

    monkeypatch.setattr(tool, "select_depth", broken)
    assert tool.main([table_file, "--max-latency-ms", "85"]) == 2
    assert "KeyError" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--help"])
    assert "1 no setting fits the limits" in capsys.readouterr().out


def test_an_empty_table_is_refused_naming_the_file(tmp_path, capsys):
    path = tmp_path / "depth_eval.json"
    path.write_text(json.dumps({"depths": []}))
    assert load_tool("select_depth").main([str(path), "--max-latency-ms", "50"]) == 2
    assert f"{path} lists no depth settings: use the depth_eval.json of a per-depth" in capsys.readouterr().err
