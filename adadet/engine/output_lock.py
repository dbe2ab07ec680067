"""One training run per output folder.

Two runs writing one ``OUTPUT_DIR`` interleave their ``metrics.json`` and overwrite each
other's checkpoints: one run's weights would be lost without a word. A training holds an
exclusive ``flock`` on ``<OUTPUT_DIR>/.adadet_run.lock`` while it runs (the training
tools from before Detectron2's set-up writes ``config.yaml`` there to the end of the
process); a trainer checks the folder when it is built. The kernel drops the lock of a
process that dies, even by SIGKILL, so a killed run never leaves the folder locked and
``--resume`` just works. (Locks on some network file systems are not shared between
machines.)
"""
import contextlib
import datetime
import fcntl
import os
import socket
import sys
from typing import IO, Dict, Iterator, List

__all__ = [
    "LOCK_NAME",
    "OutputFolderInUse",
    "check_output_dir_free",
    "claim_before_setup",
    "holding_output_dir",
    "holding_run_folder",
]

LOCK_NAME = ".adadet_run.lock"

# folder -> the open, locked lock file of a training of this process
_HELD: Dict[str, IO] = {}
# the holds of claim_before_setup
_TOOL_HOLDS: List[object] = []


class OutputFolderInUse(RuntimeError):
    pass


def _lock(path: str, output_dir: str, key: str) -> IO:
    os.makedirs(path, exist_ok=True)
    lock = open(os.path.join(path, LOCK_NAME), "a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise OutputFolderInUse(
            f"{key} {output_dir} is in use by another training run ({holder}): its "
            f"checkpoints and metrics.json would mix with this run's. Wait for it to end, or "
            f"give this run its own folder, e.g. {key} {path.rstrip('/')}_2."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
               f"{datetime.datetime.now().isoformat(timespec='seconds')}: {' '.join(sys.argv)}\n")
    lock.flush()
    return lock


@contextlib.contextmanager
def holding_output_dir(output_dir: str, key: str) -> Iterator[None]:
    """Hold ``output_dir``'s run lock inside the block (nothing more if this process
    holds it already), or raise :class:`OutputFolderInUse` naming the process that does."""
    path = os.path.realpath(output_dir or ".")
    if path in _HELD:
        yield
        return
    _HELD[path] = _lock(path, output_dir, key)
    try:
        yield
    finally:
        _HELD.pop(path).close()  # closing the file drops the lock


def holding_run_folder(output_dir: str, key: str):
    """:func:`holding_output_dir` on the main process of a (distributed) run; the other
    processes are its own."""
    from detectron2.utils import comm

    return holding_output_dir(output_dir, key) if comm.is_main_process() else contextlib.nullcontext()


def check_output_dir_free(output_dir: str, key: str) -> None:
    """Raise :class:`OutputFolderInUse` if another process trains in ``output_dir`` (on the
    main process of a run: :func:`holding_run_folder`)."""
    with holding_run_folder(output_dir, key):
        pass


def claim_before_setup(output_dir: str, key: str) -> None:
    """For a training tool, before Detectron2's ``default_setup`` writes ``config.yaml`` and
    ``log.txt`` into the folder: the main process holds its lock to the end of the process,
    and exits with the message (status 1) if another run holds it, so that nothing of that
    run is overwritten."""
    held = holding_run_folder(output_dir, key)
    try:
        held.__enter__()
    except OutputFolderInUse as e:
        sys.exit(f"error: {e}")
    _TOOL_HOLDS.append(held)  # kept (a collected one would release): to the process's end
