"""A process killed while it writes a checkpoint leaves the previous checkpoint and
``last_checkpoint`` valid (ADNCheckpointer writes to a temporary and renames)."""
import glob
import os
import signal
import subprocess
import sys

import pytest
import torch

from adadet.checkpoint import ADNCheckpointer
from adadet.checkpoint.adn_checkpointer import PARTIAL_SUFFIX

WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_killed_writer.py")


def _linear(fill: float) -> torch.nn.Linear:
    model = torch.nn.Linear(64, 64)
    torch.nn.init.constant_(model.weight, fill)
    return model


def _killed_while_saving(save_dir, name, fill):
    proc = subprocess.run(
        [sys.executable, WRITER, str(save_dir), name, str(fill)], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    partials = glob.glob(os.path.join(save_dir, f"{name}.pth.*{PARTIAL_SUFFIX}"))
    assert len(partials) == 1 and os.path.getsize(partials[0]) > 0  # killed mid-write


def _resumed_weight(save_dir) -> float:
    model = _linear(0.0)
    checkpoint = ADNCheckpointer(model, str(save_dir)).resume_or_load("", resume=True)
    assert torch.all(model.weight == model.weight[0, 0])
    return model.weight[0, 0].item(), checkpoint["iteration"]


def _last_checkpoint(save_dir) -> str:
    with open(os.path.join(save_dir, "last_checkpoint")) as f:
        return f.read()


@pytest.mark.parametrize("second_name", ["model_0000001", "model_0000000"], ids=["new", "same"])
def test_kill_during_save_keeps_previous_checkpoint(tmp_path, second_name):
    ADNCheckpointer(_linear(1.0), str(tmp_path)).save("model_0000000", iteration=1)

    _killed_while_saving(tmp_path, second_name, 2.0)

    assert _last_checkpoint(tmp_path) == "model_0000000.pth"
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["last_checkpoint", "model_0000000.pth"]
        + [os.path.basename(p) for p in glob.glob(str(tmp_path / f"*{PARTIAL_SUFFIX}"))]
    )
    assert _resumed_weight(tmp_path) == (1.0, 1)

    # the next save of that name replaces the killed writer's leftovers
    ADNCheckpointer(_linear(3.0), str(tmp_path)).save(second_name, iteration=3)
    assert not glob.glob(str(tmp_path / f"*{PARTIAL_SUFFIX}"))
    assert _last_checkpoint(tmp_path) == f"{second_name}.pth"
    assert _resumed_weight(tmp_path) == (3.0, 3)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    checkpointer = ADNCheckpointer(_linear(1.0), str(tmp_path))
    checkpointer.save("model_0000000", iteration=1)

    def fail(data, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save("model_0000001", iteration=2)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert _last_checkpoint(tmp_path) == "model_0000000.pth"
