"""What a run needs is checked before its first iteration (adadet.engine.preflight): a
misspelt evaluation dataset, an output folder that cannot be written or has no room for a
checkpoint stop the run at its start, with nothing written but what Detectron2 logs."""
import os
import shutil

import pytest

from adadet.engine import ADNTrainer
from engine_tiny_data import tiny_cfg


def _trainer_refuses(cfg, error, match):
    with pytest.raises(error, match=match):
        ADNTrainer(cfg)


def test_a_misspelt_evaluation_dataset_stops_the_run_before_training(tiny_dataset, tmp_path):
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TEST = ("adadet_test_tiny_vall",)
    _trainer_refuses(cfg, KeyError, "Dataset 'adadet_test_tiny_vall' is not registered")
    assert not (tmp_path / "out" / "model_final.pth").exists()


def test_lazy_training_checks_its_test_dataset_first(tiny_dataset, tmp_path):
    from detectron2.config import LazyConfig

    from adadet.engine.lazy_training import lazy_train
    from adn_testing import ROOT

    cfg = LazyConfig.load(str(ROOT / "configs" / "lazy" / "mask_rcnn_ada_r18_embedded_cpu.py"))
    cfg.train.output_dir = str(tmp_path / "lazy")
    cfg.dataloader.test.dataset.names = "adadet_shapes_vall"
    with pytest.raises(KeyError, match="Dataset 'adadet_shapes_vall' is not registered"):
        lazy_train(cfg)
    assert not os.path.exists(os.path.join(cfg.train.output_dir, "model_final.pth"))


def test_an_output_folder_that_cannot_be_written_is_named(tiny_dataset, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = tiny_cfg(str(blocker / "out"))  # a folder under a file cannot be made
    cfg.DATASETS.TEST = ()
    _trainer_refuses(cfg, PermissionError, f"OUTPUT_DIR {blocker / 'out'} cannot be written to")


def test_no_room_for_a_checkpoint_is_named_with_both_sizes(tiny_dataset, tmp_path, monkeypatch):
    cfg = tiny_cfg(str(tmp_path / "out"))
    cfg.DATASETS.TEST = ()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1024))
    _trainer_refuses(cfg, OSError, r"has 0 MiB free, and one checkpoint of this model .* "
                                   r"needs about \d+ MiB: free some space or give OUTPUT_DIR")
