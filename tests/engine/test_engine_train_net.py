"""tools/train_net.py in subprocesses: a short training run, --resume, --eval-only, and the
message for a missing COCO."""
import glob
import json
import os

import pytest
import torch
from detectron2.solver import build_lr_scheduler

from adadet.engine import ADNTrainer
from engine_tiny_data import read_metrics, tiny_cfg
from engine_train_net_runs import REPO, TINY_CONFIG, check_exit, run_train_net

# warmup longer than the run, so each iteration has its own learning rate
SCHEDULE = ["SOLVER.WARMUP_ITERS", "10", "SOLVER.CHECKPOINT_PERIOD", "1"]


def _results_files(output_dir):
    """COCOEvaluator's detections, wherever under OUTPUT_DIR/inference (one per depth)."""
    pattern = os.path.join(output_dir, "inference", "**", "coco_instances_results.json")
    return glob.glob(pattern, recursive=True)


@pytest.fixture(scope="module")
def first_run(tiny_dataset, tmp_path_factory):
    """2 iterations with a checkpoint after each and an evaluation at the end."""
    out = str(tmp_path_factory.mktemp("train_net"))
    opts = ["OUTPUT_DIR", out, "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "2"] + SCHEDULE
    check_exit(run_train_net(["--config-file", TINY_CONFIG] + opts, tiny_root=tiny_dataset))
    return out


def test_train_net_writes_every_loss_term(first_run):
    lines = read_metrics(first_run)
    train_line = [m for m in lines if "total_loss" in m][-1]
    assert train_line["iteration"] == 1
    for key in ("total_loss", "loss_kd", "super/total_loss", "sub/total_loss", "lr"):
        assert key in train_line
    for term in ("loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"):
        assert f"super/{term}" in train_line and f"sub/{term}" in train_line
    # the evaluation at the end (COCOEvaluator through pycocotools) was logged too
    assert any(key.endswith("bbox/AP") for m in lines for key in m)
    assert _results_files(first_run)
    for name in ("model_0000000.pth", "model_0000001.pth", "model_final.pth"):
        assert os.path.isfile(os.path.join(first_run, name))


def test_resume_restores_iteration_optimizer_and_scheduler(first_run, tiny_dataset):
    saved = torch.load(os.path.join(first_run, "model_final.pth"), weights_only=False)
    assert saved["iteration"] == 1

    # What --resume loads, checked in-process: iteration, optimizer state, scheduler.
    cfg = tiny_cfg(first_run)
    cfg.merge_from_list(["SOLVER.MAX_ITER", "4"] + SCHEDULE)
    trainer = ADNTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    assert trainer.scheduler.last_epoch == 2
    loaded = trainer.optimizer.state_dict()["state"]
    expected = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert loaded.keys() == expected.keys() and len(loaded) > 0
    for key in expected:
        torch.testing.assert_close(loaded[key]["momentum_buffer"], expected[key]["momentum_buffer"])
    del trainer

    # The real thing: train_net.py --resume up to 4 iterations.
    opts = ["OUTPUT_DIR", first_run, "SOLVER.MAX_ITER", "4"] + SCHEDULE
    check_exit(run_train_net(["--config-file", TINY_CONFIG, "--resume"] + opts, tiny_root=tiny_dataset))
    final = torch.load(os.path.join(first_run, "model_final.pth"), weights_only=False)
    assert final["iteration"] == 3
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == 4
    train_lines = [m for m in read_metrics(first_run) if "total_loss" in m]
    assert [m["iteration"] for m in train_lines] == [1, 3]

    # the learning rate of iteration 3 is the schedule's at 3, not at 1 (a fresh scheduler)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert train_lines[-1]["lr"] == pytest.approx(lrs[3]) and lrs[3] != pytest.approx(lrs[1])


def test_eval_only(first_run, tiny_dataset):
    weights = os.path.join(first_run, "model_0000001.pth")
    out = os.path.join(first_run, "eval_only")
    opts = ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", out, "MODEL.ADN.DEPTH", "TTTT"]
    proc = run_train_net(["--config-file", TINY_CONFIG, "--eval-only"] + opts, tiny_root=tiny_dataset)
    check_exit(proc)
    log = proc.stdout + proc.stderr
    assert "Evaluating at depth TTTT" in log
    # MODEL.ADN.DEPTH on the command line alone: that depth only, as the docstring says
    assert len(_results_files(out)) == 1
    with open(os.path.join(out, "depth_eval.json")) as f:
        report = json.load(f)
    assert [row["depth"] for row in report["depths"]] == ["TTTT"]
    assert "| TTTT" in log  # the table is printed


def test_eval_only_refuses_random_weights(tiny_dataset, tmp_path):
    out = str(tmp_path / "random")
    proc = run_train_net(
        ["--config-file", TINY_CONFIG, "--eval-only", "OUTPUT_DIR", out], tiny_root=tiny_dataset
    )
    assert proc.returncode != 0
    assert "empty MODEL.WEIGHTS" in proc.stderr and "--allow-random-weights" in proc.stderr
    assert not os.path.exists(os.path.join(out, "depth_eval.json"))


def test_missing_coco_says_where_it_was_looked_for(tmp_path):
    missing = str(tmp_path / "no_datasets_here")
    config = os.path.join(REPO, "configs", "mask_rcnn_ada_r50.yaml")
    proc = run_train_net(
        ["--config-file", config, "OUTPUT_DIR", str(tmp_path / "out"), "MODEL.DEVICE", "cpu"],
        cwd=str(tmp_path),
        env_extra={"DETECTRON2_DATASETS": missing},
    )
    assert proc.returncode != 0
    assert "FileNotFoundError" in proc.stderr
    assert "coco_2017_train" in proc.stderr and missing in proc.stderr
    assert "DETECTRON2_DATASETS" in proc.stderr
