"""Writing checkpoint files so that an interruption never leaves a truncated one."""

import glob
import os
import tempfile
from typing import IO, Callable

__all__ = ["PARTIAL_SUFFIX", "atomic_write"]

#: Suffix of the temporary file a checkpoint is written to before it takes its name.
PARTIAL_SUFFIX = ".partial"


def atomic_write(path: str, write: Callable[[IO], None], binary: bool = True) -> None:
    """Write ``path`` through ``write(file)`` atomically.

    The data goes to a temporary file in the same directory, is flushed to disk, and then
    replaces ``path`` in one rename (``os.replace``, atomic on POSIX and Windows). A
    process killed at any moment therefore leaves either the old ``path`` or the new one,
    never a truncated file. Temporaries of ``path`` left by a killed writer are removed
    first; a failed write removes its own and re-raises.
    """
    directory = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + "."
    stale_pattern = os.path.join(glob.escape(directory), glob.escape(prefix) + "*" + PARTIAL_SUFFIX)
    for stale in glob.glob(stale_pattern):
        os.remove(stale)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    # Make the rename itself durable (a power loss right after it keeps the new name).
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(directory, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
