"""Training that goes wrong: a diverging loss, a SIGKILLed run resumed, determinism.

The kill-and-resume test compares a run killed mid-way and resumed with ``--resume``
against an uninterrupted run. For the two to be comparable step for step, every
iteration must see the same data and no random choice: the training set is one batch
(adadet_test_tiny_pair, no flip), GroupNorm makes images independent of each other, and
the RPN / ROI sample sizes exceed the candidates (as in the DDP test), so only the order
of the two images in a batch may change, which moves the results by float rounding.
"""
import os
import signal
import subprocess
import time

import pytest
import torch

from adadet import get_depth
from adadet.engine import ADNTrainer
from engine_tiny_data import read_metrics, tiny_cfg
from engine_train_net_runs import (
    TINY_CONFIG,
    check_exit,
    run_train_net,
    train_net_command,
    train_net_env,
)

COMPARABLE_RUN = [
    "MODEL.MASK_ON", "False",
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "4096",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "20",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "512",
    "INPUT.RANDOM_FLIP", "none",
    "DATASETS.TRAIN", "('adadet_test_tiny_pair',)",
    "DATASETS.TEST", "()",
    "SOLVER.MAX_ITER", "4",
    "SOLVER.WARMUP_ITERS", "10",
    "SOLVER.CHECKPOINT_PERIOD", "1",
    "SEED", "0",  # the same initial weights
]  # fmt: skip


def _last_checkpoint(output_dir):
    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read()


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_sigkilled_run_resumes_where_it_stopped(tiny_dataset, tmp_path):
    reference, interrupted = str(tmp_path / "reference"), str(tmp_path / "interrupted")
    check_exit(
        run_train_net(
            ["--config-file", TINY_CONFIG, "OUTPUT_DIR", reference] + COMPARABLE_RUN,
            tiny_root=tiny_dataset,
        )
    )

    # The same run, killed with SIGKILL during iteration 2 (after checkpoint 1).
    proc = subprocess.Popen(
        train_net_command(
            ["--config-file", TINY_CONFIG, "OUTPUT_DIR", interrupted] + COMPARABLE_RUN,
            tiny_root=tiny_dataset,
        ),
        env=train_net_env(tiny_dataset, {"ADADET_TEST_PAUSE_AT_ITER": "2"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while _last_checkpoint(interrupted) != "model_0000001.pth":
            assert proc.poll() is None, f"training exited ({proc.returncode}) before the kill"
            assert time.monotonic() < deadline, "no checkpoint of iteration 1 in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    assert not os.path.exists(os.path.join(interrupted, "model_final.pth"))

    # What --resume loads is exactly the checkpoint: weights of both norm sets, optimizer
    # state, scheduler and iteration.
    saved = _load(os.path.join(interrupted, "model_0000001.pth"))
    cfg = tiny_cfg(interrupted)
    cfg.merge_from_list(COMPARABLE_RUN)
    trainer = ADNTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2 and trainer.scheduler.last_epoch == 2
    state = trainer.detector.state_dict()
    assert state.keys() == saved["model"].keys()
    assert any(".norm_skip." in k for k in state) and any(".norm." in k for k in state)
    for name, value in saved["model"].items():
        assert torch.equal(state[name], value), name
    optimizer_state = trainer.optimizer.state_dict()["state"]
    expected = saved["trainer"]["_trainer"]["optimizer"]["state"]
    assert optimizer_state.keys() == expected.keys() and expected
    for key in expected:
        assert torch.equal(optimizer_state[key]["momentum_buffer"], expected[key]["momentum_buffer"])
    del trainer

    check_exit(
        run_train_net(
            ["--config-file", TINY_CONFIG, "--resume", "OUTPUT_DIR", interrupted] + COMPARABLE_RUN,
            tiny_root=tiny_dataset,
        )
    )
    train_lines = [m for m in read_metrics(interrupted) if "total_loss" in m]
    assert train_lines[-1]["iteration"] == 3

    # The resumed run ends where the uninterrupted one does.
    resumed = _load(os.path.join(interrupted, "model_final.pth"))
    uninterrupted = _load(os.path.join(reference, "model_final.pth"))
    assert resumed["iteration"] == uninterrupted["iteration"] == 3
    initial = ADNTrainer.build_model(cfg).state_dict()
    moved = 0
    for name, value in uninterrupted["model"].items():
        torch.testing.assert_close(
            resumed["model"][name], value, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}"
        )
        moved += not torch.equal(value, initial[name])
    assert moved > len(initial) // 2  # real updates were compared, not initial weights


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tiny_dataset, tmp_path
):
    cfg = tiny_cfg(str(tmp_path))
    cfg.merge_from_list(["SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1"])
    trainer = ADNTrainer(cfg)
    trainer.resume_or_load(resume=False)
    detector = trainer.detector

    def poison_sub_net_mask_loss(module, inputs, output):
        # the sub-net's mask loss of the last iteration becomes NaN
        if trainer.iter == 2 and get_depth(detector) == "TTTT":
            output[1]["loss_mask"] = output[1]["loss_mask"] * float("nan")

    detector.roi_heads.register_forward_hook(poison_sub_net_mask_loss)
    with pytest.raises(FloatingPointError, match=r"iteration=2\b.*\['sub/loss_mask'\]"):
        trainer.train()

    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "model_0000000.pth",
        "model_0000001.pth",
    ]  # no model_final: the run did not finish
    assert _last_checkpoint(str(tmp_path)) == "model_0000001.pth"
    last_good = _load(os.path.join(tmp_path, "model_0000001.pth"))
    assert last_good["iteration"] == 1
    for name, value in last_good["model"].items():
        assert torch.isfinite(value.float()).all(), name
    # the failed iteration made no optimizer step (its forward did move BN statistics)
    for name, param in detector.named_parameters():
        assert torch.equal(last_good["model"][name], param.detach()), name


def test_same_seed_gives_the_same_losses(tiny_dataset, tmp_path):
    """Three iterations of the tiny Mask R-CNN (BN, flips, sampled anchors and proposals)
    with SEED fixed: identical losses; another seed: different ones."""
    runs = {}
    for name, seed in (("first", "7"), ("second", "7"), ("other_seed", "8")):
        out = str(tmp_path / name)
        opts = ["OUTPUT_DIR", out, "SEED", seed, "SOLVER.MAX_ITER", "3", "DATASETS.TEST", "()"]
        opts += ["SOLVER.WARMUP_ITERS", "10"]
        check_exit(run_train_net(["--config-file", TINY_CONFIG] + opts, tiny_root=tiny_dataset))
        runs[name] = [
            {k: v for k, v in m.items() if "loss" in k}
            for m in read_metrics(out)
            if "total_loss" in m
        ]
    assert len(runs["first"]) == 1 and len(runs["first"][0]) > 10  # the log of iteration 2
    assert runs["first"] == runs["second"]
    assert runs["first"] != runs["other_seed"]
