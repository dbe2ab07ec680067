"""Running tools/train_net.py in a subprocess for the engine tests."""
import os
import subprocess
import sys

from engine_tiny_data import HERE

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RUNNER = os.path.join(HERE, "engine_run_train_net.py")
TINY_CONFIG = os.path.join(HERE, "tiny_config.yaml")


def train_net_command(args, tiny_root=None):
    """The command line: through engine_run_train_net.py when the tiny datasets are used."""
    script = RUNNER if tiny_root else os.path.join(REPO, "tools", "train_net.py")
    return [sys.executable, script] + list(args)


def train_net_env(tiny_root=None, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="2", **(env_extra or {}))
    if tiny_root:
        env["ADADET_TEST_TINY_ROOT"] = tiny_root
    return env


def run_train_net(args, tiny_root=None, cwd=REPO, env_extra=None, timeout=300):
    return subprocess.run(
        train_net_command(args, tiny_root),
        cwd=cwd,
        env=train_net_env(tiny_root, env_extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_exit(proc):
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output}"
