"""Config mistakes named with the fix before any training: a float key given an integer
(yacs refuses to convert it) in train_net's setup and setup_deploy_cfg, TEMPERATURE 0.0,
and a TEST.ADN.DEPTHS list that would only fail at the evaluation after training."""
import argparse
import os

import pytest

from adadet.deploy.predictor import setup_deploy_cfg
from adadet.engine import ADNTrainer, SelfDistillationModel
from adadet.engine.devices import device_problem
from adn_testing import load_tool
from engine_tiny_data import HERE, tiny_cfg
from engine_train_net_runs import run_train_net

TINY_CONFIG = os.path.join(HERE, "tiny_config.yaml")


def _args(opts):
    return argparse.Namespace(config_file=TINY_CONFIG, opts=opts, eval_only=False)


@pytest.mark.parametrize("value, fix", [("0", "1.0 (the default; 0 is not > 0)."), ("1", "1.0.")])
def test_integer_temperature_on_the_command_line(value, fix):
    with pytest.raises(ValueError) as info:
        load_tool("train_net").setup(_args(["MODEL.ADN.DISTILL.TEMPERATURE", value]))
    message = str(info.value)
    assert message.startswith("MODEL.ADN.DISTILL.TEMPERATURE must be a float > 0")
    assert f"the integer {value}" in message and "Type mismatch" not in message
    assert message.endswith(f"Fix: write MODEL.ADN.DISTILL.TEMPERATURE {fix}")


def test_integer_float_key_in_a_yaml_file_and_in_deploy(tmp_path):
    config = tmp_path / "int_lr.yaml"
    config.write_text(f'_BASE_: "{TINY_CONFIG}"\nSOLVER:\n  BASE_LR: 1\n')
    with pytest.raises(ValueError, match=rf"SOLVER.BASE_LR must be a float.*config file {config}"):
        setup_deploy_cfg(str(config))
    with pytest.raises(ValueError, match=r"Fix: write MODEL.ADN.DISTILL.ALPHA 1.0\."):
        setup_deploy_cfg(TINY_CONFIG, ["MODEL.ADN.DISTILL.ALPHA", "1"])
    # other errors are yacs' own
    with pytest.raises(AssertionError, match="Non-existent key"):
        setup_deploy_cfg(TINY_CONFIG, ["MODEL.ADN.NO_SUCH_KEY", "1"])


def test_zero_temperature_written_as_float_is_refused_with_the_fix():
    cfg = tiny_cfg()
    cfg.MODEL.ADN.DISTILL.TEMPERATURE = 0.0
    from detectron2.modeling import build_model

    with pytest.raises(ValueError, match=r"must be a float > 0 .*got 0\.0\. Fix: e\.g\. MODEL\.ADN\.DISTILL\.TEMPERATURE 1\.0"):
        SelfDistillationModel.from_config(cfg, build_model(cfg))


def test_duplicate_test_depths_are_refused_before_training(tiny_dataset, tmp_path, monkeypatch):
    cfg = tiny_cfg(str(tmp_path))
    cfg.TEST.ADN.DEPTHS = ["TTTT", "base"]  # the same setting twice, after aliases

    def no_loader(*args, **kwargs):
        raise AssertionError("the training loader was built before TEST.ADN.DEPTHS was checked")

    monkeypatch.setattr(ADNTrainer, "build_train_loader", classmethod(no_loader))
    with pytest.raises(ValueError) as info:
        ADNTrainer(cfg)
    message = str(info.value)
    assert message.startswith("TEST.ADN.DEPTHS ['TTTT', 'base']: ")
    assert "name ['TTTT'] more than once" in message and "'base' = 'TTTT'" in message


def test_more_gpus_than_the_machine_has_fail_before_launch(tmp_path):
    # the tiny config: MODEL.DEVICE cpu; no GPU visible
    proc = run_train_net(
        ["--config-file", TINY_CONFIG, "--num-gpus", "2", "OUTPUT_DIR", str(tmp_path)],
        env_extra={"CUDA_VISIBLE_DEVICES": ""},
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        "error: --num-gpus 2 with MODEL.DEVICE 'cpu' needs 2 CUDA GPUs, and this machine has "
        "0 CUDA GPUs (torch.cuda.is_available() is False). Fix: --num-gpus 1 MODEL.DEVICE cpu."
    ) in proc.stderr
    assert "cuda is not available" not in proc.stderr and "Traceback" not in proc.stderr
    assert not os.listdir(tmp_path)  # nothing was set up


def test_device_problems():
    assert device_problem(1, "cpu", 0) is None and device_problem(2, "cuda", 2) is None
    assert "Fix: MODEL.DEVICE cuda" in device_problem(2, "cpu", 4)
    assert "Several processes on CPU are not supported" in device_problem(2, "cpu", 4)
    assert device_problem(1, "cuda", 0).endswith("Fix: --num-gpus 1 MODEL.DEVICE cpu.")
    assert "needs 4 CUDA GPUs, and this machine has 2 CUDA GPUs. Fix: --num-gpus 2" in (
        device_problem(4, "cuda", 2)
    )
    # the lazy-config tool names its own key and override syntax
    lazy = device_problem(2, "cpu", 0, set_device="train.device={}")
    assert lazy.startswith("--num-gpus 2 with train.device 'cpu' needs 2 CUDA GPUs")
    assert lazy.endswith("on CPU train in one process, --num-gpus 1 train.device=cpu.")
