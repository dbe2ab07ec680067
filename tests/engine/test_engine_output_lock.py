"""One training run per output folder (adadet.engine.output_lock): a second run on a
folder in use stops before writing anything there, naming the process that holds it; a
run that was killed leaves no lock behind."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adadet.engine import ADNTrainer
from adadet.engine.output_lock import LOCK_NAME, OutputFolderInUse, holding_output_dir
from adn_testing import ROOT
from engine_tiny_data import tiny_cfg

HOLD = (
    "import sys, time\n"
    "from adadet.engine.output_lock import claim_before_setup\n"
    "claim_before_setup(sys.argv[1], 'OUTPUT_DIR')\n"
    "print('held', flush=True)\n"
    "time.sleep(300)\n"
)


@pytest.fixture
def held_folder(tmp_path):
    """A folder whose lock another process (a stand-in for a running training) holds."""
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield folder, holder
    holder.kill()
    holder.wait()


def test_a_folder_in_use_is_refused_naming_its_holder_until_that_process_dies(held_folder):
    folder, holder = held_folder
    with pytest.raises(OutputFolderInUse, match=rf"OUTPUT_DIR .* in use .*pid {holder.pid} "):
        with holding_output_dir(str(folder), "OUTPUT_DIR"):
            pass
    holder.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
    holder.wait()
    with holding_output_dir(str(folder), "OUTPUT_DIR"):
        assert f"pid {os.getpid()} " in (folder / LOCK_NAME).read_text()
        with holding_output_dir(str(folder), "OUTPUT_DIR"):  # this process holds it already
            pass
        probe = subprocess.run([sys.executable, "-c", HOLD, str(folder)], capture_output=True,
                               text=True, timeout=120)
        assert probe.returncode == 1 and f"pid {os.getpid()} " in probe.stderr
    probe = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                             text=True)  # released at the end of the block
    assert probe.stdout.readline().strip() == "held"
    probe.kill()
    probe.wait()


def test_a_trainer_on_a_folder_in_use_stops_before_training(held_folder, tiny_dataset):
    folder, holder = held_folder
    with pytest.raises(OutputFolderInUse, match=f"pid {holder.pid} "):
        ADNTrainer(tiny_cfg(str(folder)))
    assert sorted(p.name for p in Path(folder).iterdir()) == [LOCK_NAME]


def test_train_net_on_a_folder_in_use_overwrites_nothing_of_the_other_run(held_folder):
    folder, holder = held_folder
    (folder / "config.yaml").write_text("the running training's config\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file",
         str(ROOT / "configs" / "mask_rcnn_ada_r18_embedded_cpu.yaml"), "OUTPUT_DIR", str(folder)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"OUTPUT_DIR {folder} is in use by another training run (pid {holder.pid} " in result.stderr
    assert "Traceback" not in result.stderr
    assert (folder / "config.yaml").read_text() == "the running training's config\n"
    assert not (folder / "log.txt").exists()  # refused before Detectron2's set-up wrote
