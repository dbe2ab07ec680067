"""The study's aggregation over seeds and the checks of the paper's claim."""
import json

import pytest

from adadet.depth import all_depths
from adadet.evaluation.study_report import (
    aggregate_runs,
    backbone_only,
    claim_checks,
    depth_gap_by_seed,
    paired_differences,
    pareto_summary,
    plot_costs,
    write_study,
)


def _rows(ap_of, seed_offset=0.0):
    return [
        {"depth": d, "box_AP": ap_of(d) + seed_offset, "mask_AP": ap_of(d), "gflops": 2.0,
         "backbone_gflops": 4.0 - d.count("T"), "latency_ms": 10.0 - d.count("T")}
        for d in all_depths(4)
    ]


def _monotone(depth):  # each skipped stage costs 1 AP
    return 40.0 - depth.count("T")


def test_mean_and_sample_std_over_seeds():
    rows = aggregate_runs({"r": [_rows(_monotone, -1.0), _rows(_monotone, 1.0)]})
    assert len(rows) == 16
    ffff = next(r for r in rows if r["depth"] == "FFFF")
    assert ffff["seeds"] == 2 and ffff["box_AP_mean"] == pytest.approx(40.0)
    assert ffff["box_AP_std"] == pytest.approx(2 ** 0.5)  # sample std of 39 and 41
    assert ffff["mask_AP_std"] == 0.0 and ffff["backbone_gflops_mean"] == 4.0
    assert ffff["box_AP_per_seed"] == [39.0, 41.0]  # in seed order, for pairing later
    assert "backbone_gflops_per_seed" not in ffff  # costs do not vary by seed


def test_claim_holds_for_a_monotone_model_and_names_what_breaks_it():
    seeds = [_rows(_monotone, -0.1), _rows(_monotone, 0.1)]
    check = claim_checks(aggregate_runs({"r": seeds}))
    assert check["holds"] and check["dominance_pairs"] == 65  # 3^4 - 2^4 strict supersets
    assert check["super_minus_base"] == pytest.approx(4.0)

    def ttff_too_low(depth):  # TTFF 5 AP below TTTF and TTTT: a rise along the chain
        return _monotone(depth) - (5.0 if depth == "TTFF" else 0.0)

    check = claim_checks(aggregate_runs({"r": [_rows(ttff_too_low, -0.1), _rows(ttff_too_low, 0.1)]}))
    assert not check["holds"]
    assert [(r["from"], r["to"]) for r in check["chain_rises"]] == [("TTFF", "TTTF")]
    violations = {(v["cheaper"], v["dearer"]) for v in check["dominance_violations"]}
    assert ("TTTF", "TTFF") in violations and ("TTTT", "TTFF") in violations
    assert all(v["dearer"] == "TTFF" for v in check["dominance_violations"])


def test_a_rise_within_one_std_is_noise():
    def noisy(depth):
        return _monotone(depth) + (1.5 if depth == "TTTT" else 0.0)  # TTTT 0.5 above TTTF

    seeds = [_rows(noisy, -1.0), _rows(noisy, 1.0)]  # std 1.41 > 0.5
    assert claim_checks(aggregate_runs({"r": seeds}))["holds"]


def test_report_files(tmp_path):
    rows = aggregate_runs({"a": [_rows(_monotone, -1), _rows(_monotone, 1)],
                           "b": [_rows(_monotone, 0), _rows(_monotone, 0.5)]})
    paths = write_study(rows, str(tmp_path), "study_tune", {"title": "t", "seeds": [0, 1]})
    saved = json.load(open(paths["json"]))
    assert set(saved["checks"]) == {"a", "b"} and saved["checks"]["a"]["box_AP"]["holds"]
    assert len(saved["rows"]) == 32
    assert "| a | FFFF | 40.0 ± 1.4 |" in open(paths["md"]).read()
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"
    pareto = saved["pareto"]["a"]["box_AP"]  # every setting's detector costs 2.0 GFLOPs here
    assert pareto["cost"] == "gflops" and pareto["front"] == ["FFFF"] and pareto["cost_ratio"] == 1.0


def test_refinement_summary_over_seeds():
    from adadet.evaluation.study_report import format_refinement_table, refinement_summary

    def seed(x):
        return [{"stage": "res2", "skipped_alone": "TFFF", "kl": x, "cosine": 1 - x,
                 "relative_l2": 2 * x}]

    summary = refinement_summary([seed(0.1), seed(0.3)])
    assert summary[0]["relative_l2_mean"] == pytest.approx(0.4)
    assert summary[0]["cosine_std"] == pytest.approx(0.1414, abs=1e-3)
    assert "| stages | res2 | 0.400 ± 0.283 |" in format_refinement_table({"stages": summary})


def test_recipes_compared_paired_by_seed():
    from adadet.evaluation.study_report import format_paired_table, paired_differences

    # Seeds spread by +-3 AP, far more than the 0.5 AP the recipe adds: paired by seed,
    # the difference is exact and has no spread.
    runs = {"base": [_rows(_monotone, -3.0), _rows(_monotone, 3.0)],
            "better": [_rows(_monotone, -2.5), _rows(_monotone, 3.5)]}
    paired = paired_differences(runs, "base")["better"]
    assert paired["per_seed"] == pytest.approx([0.5, 0.5]) and paired["std"] == pytest.approx(0)
    assert paired["settings_ahead"] == 16 and paired["settings"] == 16
    assert "| better | base | +0.50 ± 0.00 box AP | +0.50 / +0.50 | 16 of 16 |" in (
        format_paired_table({"better": paired}))
    # Unpaired, the same runs are indistinguishable: their spread is 4.2 AP.
    rows = aggregate_runs(runs)
    assert next(r for r in rows if r["depth"] == "FFFF")["box_AP_std"] > 4

    worse_at_ffff = [[dict(r, box_AP=r["box_AP"] - (2.0 if r["depth"] == "FFFF" else 0.0))
                      for r in seed] for seed in runs["base"]]
    paired = paired_differences({"base": runs["base"], "w": worse_at_ffff}, "base")["w"]
    assert paired["mean_difference"] == pytest.approx(-2.0 / 16)
    assert paired["settings_ahead"] == 0

    with pytest.raises(ValueError, match="same seeds"):
        paired_differences({"base": runs["base"], "one": runs["base"][:1]}, "base")


def test_depth_gap_per_seed_is_free_of_the_spread_between_seeds():

    seeds = [_rows(_monotone, -3.0), _rows(_monotone, 3.0)]  # FFFF 4 AP above TTTT in each
    gap = depth_gap_by_seed({"r": seeds})["r"]
    assert gap["per_seed"] == pytest.approx([4.0, 4.0]) and gap["std"] == pytest.approx(0)
    # the checks' unpaired figure carries the 4.2 AP spread between the seeds
    assert claim_checks(aggregate_runs({"r": seeds}))["super_minus_base_std"] > 4


def test_a_stored_report_gives_back_each_seeds_runs(tmp_path):
    from adadet.evaluation.study_report import runs_from_report

    seeds = [_rows(_monotone, -3.0), _rows(_monotone, 3.0), _rows(_monotone, 1.0)]
    write_study(aggregate_runs({"sandwich/trained": seeds}), str(tmp_path), "old",
                {"seeds": [0, 1, 2], "split": "adadet_textures_tune"})
    report = json.loads((tmp_path / "old.json").read_text())
    back = runs_from_report(report, "sandwich/trained", [2, 0])  # in the order asked for
    for got, want in zip(back, (seeds[2], seeds[0])):
        assert [(r["depth"], r["box_AP"], r["mask_AP"]) for r in got] == [
            (r["depth"], r["box_AP"], r["mask_AP"]) for r in want]
        assert [r["backbone_gflops"] for r in got] == [r["backbone_gflops"] for r in want]
    with pytest.raises(ValueError, match="not in the report"):
        runs_from_report(report, "stages/trained", [0])
    with pytest.raises(ValueError, match=r"seeds \[0, 1, 2\], not \[5\]"):
        runs_from_report(report, "sandwich/trained", [0, 5])


def test_the_study_pairs_new_runs_with_a_stored_recipe_without_training_it(
    tmp_path, capsys, monkeypatch
):
    from adn_testing import load_tool

    study = load_tool("study")
    here = {"commit": "abc", "cpu": "CPU A", "threads": 1, "torch": "t", "numpy": "n", "data": "d"}
    monkeypatch.setattr(study, "environment", lambda task, split: here)
    old = [_rows(_monotone, -3.0), _rows(_monotone, 3.0)]
    new = [[dict(r, box_AP=r["box_AP"] + 0.5) for r in seed] for seed in old]
    for recipe, runs in (("stages", old), ("sandwich", new)):
        write_study(aggregate_runs({f"{recipe}/trained": runs}), str(tmp_path), recipe,
                    {"seeds": [0, 1], "split": "adadet_textures_tune", "environment": here,
                     "recipes": {recipe: {"seconds_per_iteration": 1.0}}})
    stored = ["--stored", f"stages={tmp_path / 'stages.json'}",
              "--stored", f"sandwich={tmp_path / 'sandwich.json'}"]
    out = tmp_path / "out"
    study.main(["--recipes", "sandwich", *stored, "--seeds", "0", "1", "--bn", "trained",
                "--output", str(out)])
    report = json.loads((out / "study_tune.json").read_text())
    paired = report["info"]["paired"]["sandwich/trained"]
    assert paired["reference"] == "stages/trained"
    assert paired["per_seed"] == pytest.approx([0.5, 0.5]) and paired["settings_ahead"] == 16
    assert not (out / "sandwich").exists()  # nothing was trained or evaluated
    assert report["info"]["environment"] == here
    missing = ["--stored", f"sandwich={tmp_path / 'missing.json'}"]
    for bad, reason in ((["--split", "test"], "this study of adadet_textures_test"),
                        (["--seeds", "0", "7"], "not [7]"),
                        (missing, "no file")):
        with pytest.raises(SystemExit):
            study.main(["--recipes", "sandwich", *stored, "--seeds", "0", "1", "--bn", "trained",
                        "--output", str(out), *bad])
        assert reason in capsys.readouterr().err
    # runs of another machine (or of no recorded one) do not pair by seed with these
    monkeypatch.setattr(study, "environment", lambda task, split: dict(here, cpu="CPU B"))
    with pytest.raises(SystemExit):
        study.main(["--recipes", "sandwich", *stored, "--seeds", "0", "1", "--bn", "trained",
                    "--output", str(out)])
    assert "cpu: 'CPU B' here, 'CPU A' in the report" in capsys.readouterr().err


def test_an_environment_record_names_what_differs(tmp_path):
    from adadet.utils.environment import environment_differences, files_digest, run_environment

    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.jpg").write_bytes(b"x")
    files = [str(tmp_path / "a.json"), str(tmp_path / "b.jpg")]
    record = run_environment(str(tmp_path), files, threads=1)
    assert record["commit"] is None and record["threads"] == 1  # no git checkout there
    assert environment_differences(record, dict(record)) == []
    (tmp_path / "b.jpg").write_bytes(b"y")
    changed = dict(record, data=files_digest(files))
    assert environment_differences(record, changed) == [
        f"data: {changed['data']!r} here, {record['data']!r} in the report"]
    assert len(environment_differences({}, record)) == 6  # nothing recorded: all differ


def test_an_inversion_is_a_cheaper_setting_ahead_in_every_seed():
    from adadet.evaluation.study_report import inversions_in_every_seed

    def seed(ap):
        return [{"depth": d, "box_AP": v} for d, v in ap.items()]

    # TTTT over TTTF by a little in both seeds: an inversion, however small the gain next
    # to the spread between seeds; TFFF over FFFF in one seed only: none
    seeds = [
        seed({"FFFF": 40.0, "TFFF": 40.5, "TTTF": 35.0, "TTTT": 35.2}),
        seed({"FFFF": 44.0, "TFFF": 43.0, "TTTF": 38.0, "TTTT": 38.1}),
    ]
    result = inversions_in_every_seed(seeds)
    assert result["pairs"] == 6 and result["seeds"] == 2  # every strict skip-superset pair
    assert [(v["cheaper"], v["dearer"]) for v in result["inversions"]] == [("TTTT", "TTTF")]
    assert result["inversions"][0]["per_seed"] == pytest.approx([0.2, 0.1])


def _whole_rows(ap_of, seed_offset=0.0):
    return [
        {"depth": d, "box_AP": ap_of(d) + seed_offset, "mask_AP": ap_of(d), "gflops": 7.0 - d.count("T"),
         "backbone_gflops": 4.0 - d[:4].count("T"), "latency_ms": 10.0 - d.count("T")}
        for d in all_depths(7)
    ]


def test_a_whole_detectors_chain_and_ends_run_over_all_its_letters():
    # each skipped part costs 1 AP, except that skipping the mask head (the last letter)
    # raises AP by 2 when everything else skips too: a rise at the chain's last step
    def ap(d):
        return 40.0 - d.count("T") + (3.0 if d == "TTTTTTT" else 0.0)

    rows = aggregate_runs({"whole": [_whole_rows(ap, s) for s in (0.0, 0.5, 1.0)]})
    check = claim_checks(rows)
    assert check["chain"] == ["T" * i + "F" * (7 - i) for i in range(8)]
    assert [(r["from"], r["to"]) for r in check["chain_rises"]] == [("TTTTTTF", "TTTTTTT")]
    assert check["super_minus_base"] == pytest.approx(40.0 - 36.0)
    gap = depth_gap_by_seed({"whole": [_whole_rows(ap, s) for s in (0.0, 0.5)]})["whole"]
    assert (gap["dearer"], gap["cheaper"]) == ("FFFFFFF", "TTTTTTT")
    assert gap["per_seed"] == pytest.approx([4.0, 4.0])


def test_a_whole_detector_is_paired_with_a_backbone_only_one_at_its_backbone_settings():
    # the whole model is 1 AP behind at every backbone-only setting and far ahead (+10)
    # wherever its neck or heads skip: only the backbone-only settings may be compared
    def whole(d):
        return _monotone(d[:4]) - (1.0 if set(d[4:]) == {"F"} else -10.0)

    seeds = (0.0, 2.0)
    paired = paired_differences({
        "sandwich": [_rows(_monotone, s) for s in seeds],
        "whole": [_whole_rows(whole, s) for s in seeds],
    }, "sandwich")["whole"]
    assert paired["settings"] == 16
    assert paired["per_seed"] == pytest.approx([-1.0, -1.0])
    assert paired["settings_ahead"] == 0
    assert backbone_only({"TTFFFFF": 1.0, "TTFFFTF": 2.0}) == {"TTFF": 1.0}


def test_the_whole_recipe_is_the_whole_detector_config_and_its_settings_are_its_own():
    """tools/study.py's 'whole' recipe on the textures config builds the detector of
    configs/mask_rcnn_ada_r18_textures_whole_cpu.yaml (7 letters) with its students, and
    is evaluated at settings of that layout, the 16 backbone-only ones among them."""
    from detectron2.config import get_cfg

    from adadet import add_adn_config
    from adadet.config import merge_config
    from adadet.modeling.adaptive_parts import config_depth_layout
    from adn_testing import ROOT, load_tool

    study = load_tool("study")

    def cfg_of(path, opts=()):
        cfg = get_cfg()
        add_adn_config(cfg)
        merge_config(cfg, str(path), list(opts))
        return cfg

    recipe = cfg_of(study.TASKS["textures"], study.RECIPES["whole"][1])
    config = cfg_of(ROOT / "configs" / "mask_rcnn_ada_r18_textures_whole_cpu.yaml")
    layout = config_depth_layout(recipe)
    assert layout == config_depth_layout(config) and layout.num_flags == 7
    for key in ("BACKBONE.NAME", "RPN.HEAD_NAME", "ROI_MASK_HEAD.NAME"):
        first, second = key.split(".")
        assert recipe.MODEL[first][second] == config.MODEL[first][second]
    for key in ("ALWAYS_STUDENTS", "SUBNETS"):
        assert list(recipe.MODEL.ADN.DISTILL[key]) == list(config.MODEL.ADN.DISTILL[key])
    evaluated = layout.expand(study.EVALUATED["whole"])  # each valid, none twice
    assert {d[:4] for d in evaluated if d.endswith("FFF")} == set(all_depths(4))
    assert {"FFFFFFF", "TTTTTTT"} <= set(evaluated)


def test_the_pareto_front_and_what_it_spans(tmp_path):
    # each skipped part costs 1 GFLOP and 1 AP, except the mask head (the last letter),
    # 0.5 AP: at each cost below the top the best setting skips the mask head
    def ap(d):
        return 40.0 - d.count("T") + (0.5 if d[-1] == "T" else 0.0)

    def seed_rows(offset):
        return [dict(r, gflops=8.0 - r["depth"].count("T")) for r in _whole_rows(ap, offset)]

    rows = aggregate_runs({"whole": [seed_rows(0.0), seed_rows(1.0)]})
    assert plot_costs(rows) == ["gflops", "latency_ms"]
    front = pareto_summary(rows, "box_AP", "gflops")
    assert front["front"][0] == "TTTTTTT" and front["front"][-2:] == ["FFFFFFT", "FFFFFFF"]
    assert all(d.endswith("T") for d in front["front"][:-1])  # FFFFFFF only at the top
    assert front["cost_ratio"] == pytest.approx(8.0 / 1.0)
    assert front["ap_lost"] == pytest.approx(40.5 - 34.0)  # means over the seeds
    assert [p["depth"] for p in front["points"]] == front["front"]
    paths = write_study(rows, str(tmp_path), "study_tune", {"title": "t", "seeds": [0, 1]})
    assert "8.00x gflops for 6.5 AP" in open(paths["md"]).read()
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"
