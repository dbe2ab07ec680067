"""What a training run's figures depend on besides its config and seed, recorded so that a
rerun can be checked against it.

Runs repeat to the bit only on one machine: another CPU model, thread count or library
version changes float rounding, which a training run amplifies into AP differences of
whole points. :func:`run_environment` records those, the code's commit and a hash of the
data files; :func:`environment_differences` says what two records disagree on.
"""
import hashlib
import os
import platform
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy
import torch

__all__ = ["cpu_model_name", "environment_differences", "run_environment", "files_digest"]

#: What two runs must share for their figures to pair seed by seed.
COMPARED = ("commit", "cpu", "threads", "torch", "numpy", "data")


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _commit(directory: str) -> Optional[str]:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; None
    outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def files_digest(paths: Sequence[str]) -> str:
    """SHA-256 over the files (names relative to their common folder, then contents)."""
    paths = sorted(os.path.abspath(p) for p in paths)
    root = os.path.commonpath(paths) if paths else ""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.relpath(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def run_environment(code_dir: str, data_files: Sequence[str], threads: int) -> Dict[str, Any]:
    """The record of :data:`COMPARED` (``threads``: the torch threads the runs use)."""
    return {
        "commit": _commit(code_dir),
        "cpu": cpu_model_name(),
        "threads": int(threads),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "data": files_digest(data_files),
        "python": platform.python_version(),
    }


def environment_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> List[str]:
    """``"cpu: 'A' here, 'B' in the report"`` for each compared entry that differs or was
    not recorded (all of them when nothing was)."""
    return [
        f"{key}: {current.get(key)!r} here, "
        + (f"{recorded[key]!r} in the report" if key in recorded else "not recorded in the report")
        for key in COMPARED
        if key not in recorded or recorded[key] != current.get(key)
    ]
