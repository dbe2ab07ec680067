"""Checkpoint inputs that used to end in a raw traceback: a download that cannot happen
(no internet) and a ``last_checkpoint`` that is not text; each names the fix."""
import urllib.error

import pytest
import torch

from adadet.checkpoint import ADNCheckpointer, CheckpointError, CheckpointWriteError


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


def _embedded_model(**overrides):
    from detectron2.modeling import build_model

    from adn_testing import make_project_cfg

    return build_model(make_project_cfg("mask_rcnn_ada_r18_embedded_cpu.yaml", **overrides))


@pytest.fixture(scope="module")
def embedded_checkpoint(tmp_path_factory):
    """A whole checkpoint of the embedded demo model (3 classes)."""
    folder = tmp_path_factory.mktemp("embedded")
    model = _embedded_model()
    ADNCheckpointer(model, str(folder)).save("model")
    return model, str(folder / "model.pth")


def test_a_whole_checkpoint_loads_when_every_weight_is_required(embedded_checkpoint):
    model, path = embedded_checkpoint
    other = _embedded_model()
    ADNCheckpointer(other, require_all_weights=True).load(path)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_for_another_number_of_classes_names_both(embedded_checkpoint):
    from adadet.checkpoint import CheckpointMismatchError

    _, path = embedded_checkpoint
    model = _embedded_model(MODEL__ROI_HEADS__NUM_CLASSES=5)
    with pytest.raises(CheckpointMismatchError) as error:
        ADNCheckpointer(model, require_all_weights=True).load(path)
    message = str(error.value)
    assert "roi_heads.box_predictor" in message and "roi_heads.mask_head" in message
    assert "MODEL.ROI_HEADS.NUM_CLASSES 3" in message and "--allow-random-weights" in message
    ADNCheckpointer(model).load(path)  # training from it (fine-tuning) stays allowed


def test_a_checkpoint_without_the_heads_is_refused_for_evaluation(embedded_checkpoint, tmp_path):
    from adadet.checkpoint import CheckpointMismatchError

    model, _ = embedded_checkpoint
    backbone_only = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    path = tmp_path / "backbone.pth"
    torch.save({"model": backbone_only}, path)
    with pytest.raises(CheckpointMismatchError, match=r"proposal_generator\.rpn_head \(\d+\)"):
        ADNCheckpointer(_embedded_model(), require_all_weights=True).load(str(path))


def test_a_full_disk_at_a_save_says_so_and_leaves_the_last_checkpoint_whole(
        embedded_checkpoint, tmp_path, monkeypatch):
    model, _ = embedded_checkpoint
    checkpointer = ADNCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000009")
    before = (tmp_path / "model_0000009.pth").read_bytes()
    real_save = torch.save

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1984 vs 1900")

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(CheckpointWriteError, match=r"model_0000019\.pth could not be written .* the disk is full") as error:
        checkpointer.save("model_0000019")
    assert "--resume" in str(error.value) and "Nothing already saved changed" in str(error.value)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "model_0000009.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
