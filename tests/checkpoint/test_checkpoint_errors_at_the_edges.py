"""Checkpoint inputs that used to end in a raw traceback: a download that cannot happen
(no internet) and a ``last_checkpoint`` that is not text; each names the fix."""
import urllib.error

import pytest
import torch

from adadet.checkpoint import ADNCheckpointer, CheckpointError


def test_weights_that_cannot_be_downloaded_say_what_to_give_instead(monkeypatch):
    checkpointer = ADNCheckpointer(torch.nn.Linear(2, 2))

    def offline(path, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(checkpointer.path_manager, "get_local_path", offline)
    with pytest.raises(CheckpointError) as raised:
        checkpointer.load("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    message = str(raised.value)
    assert "detectron2://ImageNetPretrained/MSRA/R-50.pkl could not be downloaded" in message
    assert "Name or service not known" in message
    assert "give its local path as MODEL.WEIGHTS" in message


def test_a_last_checkpoint_that_is_not_text_names_the_fix_and_keeps_the_checkpoints(tmp_path):
    model = torch.nn.Linear(2, 2)
    torch.save({"model": model.state_dict()}, tmp_path / "model_0000009.pth")
    (tmp_path / "last_checkpoint").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CheckpointError, match="last_checkpoint is not text: it should hold the "
                                              "name of this run's latest checkpoint"):
        ADNCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert (tmp_path / "model_0000009.pth").stat().st_size > 0
