"""Checks of a deploy tool's file arguments, made before any model is built (a bad path
should not cost a model build first). A failed check prints one line on stderr and exits
with status 2, as argparse does for a bad argument.

``tools/run_exported.py`` has its own copies: it must run without adadet installed.
"""
import os
import sys
from typing import Mapping, NoReturn, Optional

from ..utils.writable import unwritable_reason


class ArgumentChecks:
    """The checks of one tool, whose errors start with ``prefix`` (e.g. ``"demo.py: error: "``)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def fail(self, message: str) -> NoReturn:
        print(f"{self.prefix}{message}", file=sys.stderr)
        raise SystemExit(2)

    def readable_file(self, path: str, what: str, fix: str,
                      fixes: Optional[Mapping[str, str]] = None) -> None:
        """Stops unless ``path`` is a non-empty file: ``"{what} {path} {problem}: {fix}."``,
        the problem being "does not exist", "is a directory" or "is empty (0 bytes)";
        ``fixes`` gives some problems their own fix."""
        if not os.path.exists(path):
            problem = "does not exist"
        elif os.path.isdir(path):
            problem = "is a directory"
        elif os.path.getsize(path) == 0:
            problem = "is empty (0 bytes)"
        else:
            return
        self.fail(f"{what} {path} {problem}: {(fixes or {}).get(problem, fix)}.")

    def image_file(self, path: str, what: str, fix: str) -> None:
        """:meth:`readable_file`, and Pillow can read the image's header (no decoding)."""
        from PIL import Image

        self.readable_file(path, what, fix)
        try:
            with Image.open(path):
                pass
        except OSError as e:
            self.fail(f"{what} {path} is not an image ({type(e).__name__}: {e}): {fix}.")

    def writable_directory(self, path: str, message: str) -> None:
        """Creates ``path`` if needed and stops unless a file can be created in it (a
        read-only or virtual file system fails only there). ``message`` may name
        ``{path}`` and ``{reason}`` (the system's)."""
        reason = unwritable_reason(path)
        if reason is not None:
            self.fail(message.format(path=path, reason=reason))
