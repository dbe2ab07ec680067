"""Whether a folder can take new files: created if needed, then a file is made in it (a
read-only or virtual file system fails only there, not on a permission bit)."""
import os
import tempfile
from typing import Optional

__all__ = ["unwritable_reason"]


def unwritable_reason(path: str) -> Optional[str]:
    """None if ``path`` (created if missing) takes a new file, else the system's reason."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return str(e.strerror or e)
    return None
