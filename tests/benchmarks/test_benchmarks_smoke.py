"""Smoke test of benchmarks/run.py: the --quick run completes and writes a complete JSON.

Benchmarks are not tests: nothing here checks a timing or a ratio against a target.
"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_writes_every_section_with_the_device_named(tmp_path):
    output = tmp_path / "quick.json"
    # One thread: on a busy machine, OpenMP threads waiting on each other for a core made
    # this run ~10x slower (100 s against 11 s with other jobs on both cores).
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--device", "cpu",
         "--threads", "1", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(output.read_text())

    device = report["device"]["name"]
    assert report["device"]["type"] == "cpu" and device.endswith(", 1 thread")
    assert device in completed.stdout  # the printed tables name the device too
    assert report["settings"]["quick"] is True

    latency = report["latency"]
    assert [row["depth"] for row in latency["rows"]] == ["FFFF", "TFFF", "TTFF", "TTTF", "TTTT"]
    for row in latency["rows"]:
        assert row["detector_latency"]["samples"] == report["settings"]["repeats"]
        assert row["detector_latency"]["median_ms"] > 0 and row["backbone_latency"]["p90_ms"] > 0
        assert row["detector_flops_ratio"] > 0 and row["backbone_flops_ratio"] > 0
    flops = [row["backbone"]["flops"] for row in latency["rows"]]
    assert flops == sorted(flops, reverse=True) and flops[0] > flops[-1]

    overhead = report["overhead"]
    assert overhead["outputs_identical"] is True
    assert overhead["detector"]["ratio"] > 0 and overhead["backbone"]["ratio"] > 0

    switching = report["switch"]["models"]
    assert [m["resnet_depth"] for m in switching] == [50, 101]
    for model in switching:
        assert all(op["median_us"] > 0 for op in model["operations"].values())

    train = report["train"]
    assert train["time_ratio"] > 0 and train["saved_activations_ratio"] > 1
    assert train["adn"]["median_s"] > 0 and train["stock"]["median_s"] > 0
    assert train["memory_measure"]
    # The other training schemes ran in the same rounds; three students keep more
    # activations for the backward than the one base-net student (the smallest sub-net).
    assert set(train["scheme_time_ratios"]) == {"random_subnet", "three_students", "sandwich"}
    assert all(ratio > 0 for ratio in train["scheme_time_ratios"].values())
    for scheme in ("three_students", "sandwich"):  # more than one student
        assert train[scheme]["saved_activations_mib"] > train["adn"]["saved_activations_mib"]


def test_the_latency_section_times_a_whole_detectors_chain(tmp_path):
    output = tmp_path / "whole.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--device", "cpu",
         "--threads", "1", "--sections", "latency", "--config-file",
         str(REPO / "configs" / "mask_rcnn_ada_r50_whole.yaml"), "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    rows = json.loads(output.read_text())["latency"]["rows"]
    # the config's chain: the backbone's settings, then the neck and heads skip
    assert [row["depth"] for row in rows] == [
        "FFFFFFF", "TFFFFFF", "TTFFFFF", "TTTFFFF", "TTTTFFF", "TTTTTFF", "TTTTTTF", "TTTTTTT"]
    # every setting traced (nothing derived), and the neck and heads save where they skip
    assert not any(row["detector"].get("derived") for row in rows)
    flops = {row["depth"]: row["detector"]["flops"] for row in rows}
    assert flops["TTTTTTT"] < flops["TTTTTTF"] < flops["TTTTTFF"] < flops["TTTTFFF"]
    assert len({row["detections_per_image"] for row in rows}) == 1
