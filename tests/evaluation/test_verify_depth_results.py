"""TEST.EXPECTED_RESULTS against per-depth results ({depth: {task: {metric: value}}}),
in-process with hand-made results."""
import logging

import pytest

from adn_testing import make_adn_cfg
from adadet.evaluation import verify_depth_results

RESULTS = {
    "FFFF": {"bbox": {"AP": 40.0, "AP50": 60.0}, "segm": {"AP": 35.0}, "cost": {"gflops": 9.0}},
    "TTTT": {"bbox": {"AP": 36.0, "AP50": 55.0}, "segm": {"AP": 31.0}, "cost": {"gflops": 6.0}},
}


def cfg_expecting(expected, depth="FFFF"):
    cfg = make_adn_cfg(18)
    cfg.TEST.EXPECTED_RESULTS = expected
    cfg.MODEL.ADN.DEPTH = depth
    return cfg


@pytest.fixture
def errors():
    records = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append
    logger = logging.getLogger("adadet.evaluation.verification")
    logger.addHandler(handler)
    yield lambda: "\n".join(r.getMessage() for r in records)
    logger.removeHandler(handler)


def test_per_depth_and_default_depth_entries_pass():
    cfg = cfg_expecting(
        [["TTTT/bbox", "AP", 36.1, 0.2], ["base/segm", "AP", 31.0, 0.1], ["bbox", "AP50", 60.0, 0.5]]
    )
    assert verify_depth_results(cfg, RESULTS)
    # a plain task is checked at MODEL.ADN.DEPTH
    assert verify_depth_results(cfg_expecting([["bbox", "AP", 36.0, 0.1]], depth="base"), RESULTS)


def test_mismatch_fails_like_detectron2(errors):
    cfg = cfg_expecting([["TTTT/bbox", "AP", 38.5, 0.2], ["FFFF/bbox", "AP", 40.0, 0.2]])
    assert verify_depth_results(cfg, RESULTS, exit_on_failure=False) is False
    assert "TTTT/bbox AP: 36.0000, expected 38.5 +- 0.2" in errors()
    assert "FFFF/bbox AP" not in errors().split("Actual results")[0]  # that one passed
    with pytest.raises(SystemExit) as info:  # Detectron2's verify_results exits with 1
        verify_depth_results(cfg, RESULTS)
    assert info.value.code == 1


def test_missing_or_nan_metric_fails(errors):
    nan = {"TTTT": {"bbox": {"AP": float("nan")}}}
    assert not verify_depth_results(cfg_expecting([["TTTT/bbox", "AP", 1.0, 0.1]]), nan, exit_on_failure=False)
    assert not verify_depth_results(cfg_expecting([["TTTT/bbox", "APx", 1.0, 0.1]]), RESULTS, exit_on_failure=False)
    assert "not finite" in errors() and "TTTT/bbox APx: missing" in errors()


def test_depth_not_evaluated_is_a_clear_error():
    with pytest.raises(ValueError) as info:
        verify_depth_results(cfg_expecting([["bbox", "AP", 38.5, 0.2]], depth="TTFF"), RESULTS)
    message = str(info.value)
    assert "depth TTFF (MODEL.ADN.DEPTH" in message and "not evaluated" in message
    assert "['FFFF', 'TTTT']" in message and "TEST.ADN.DEPTHS" in message
    with pytest.raises(ValueError, match="depth TFFF .named in the task., which was not evaluated"):
        verify_depth_results(cfg_expecting([["TFFF/bbox", "AP", 38.5, 0.2]]), RESULTS)
    with pytest.raises(ValueError, match=r"no task 'keypoints' .* have \['bbox', 'segm'\]"):
        verify_depth_results(cfg_expecting([["TTTT/keypoints", "AP", 1.0, 0.1]]), RESULTS)


def test_no_expected_results_passes_anything():
    assert verify_depth_results(cfg_expecting([]), {})
