"""Reading checkpoint files, with errors that name the file and the fix."""

import os

import torch

from .errors import CheckpointNotFoundError, CheckpointReadError

__all__ = ["check_file_exists", "read_error", "read_torch_file"]


def check_file_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(
            f"Checkpoint '{path}' not found"
            + (" (it is a directory)" if os.path.isdir(path) else "")
            + ". Fix: check the path (MODEL.WEIGHTS when training); a relative path is "
            f"relative to the current directory, {os.getcwd()}."
        )


def read_error(path: str, error: BaseException) -> CheckpointReadError:
    """Explain why ``path`` could not be read."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Weights only load failed" in str(error):
        return CheckpointReadError(
            f"Checkpoint '{path}' holds Python objects besides tensors (e.g. training "
            "arguments), which torch.load refuses by default (weights_only=True since "
            "PyTorch 2.6). Fix, only if you trust its source: for ImageNet ResNet weights, "
            f"convert them once with `python tools/convert_adn_weights.py --trust {path} "
            "OUT.pkl` and set MODEL.WEIGHTS to OUT.pkl; otherwise re-save its tensors alone "
            "(torch.load(..., weights_only=False)['model'] saved with torch.save)."
        )
    return CheckpointReadError(
        f"Checkpoint '{path}' could not be read ({type(error).__name__}: {detail}): it is "
        "truncated or corrupt, or not a PyTorch / pickle checkpoint at all. Fix: download "
        "or save it again (compare its size or checksum with the source)."
    )


def read_torch_file(path: str, *, trust: bool = False):
    """``torch.load`` on CPU. ``trust=True`` allows arbitrary pickled objects
    (``weights_only=False``): only for files from a trusted source."""
    check_file_exists(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:  # any failure of a corrupt file: zip, pickle, key, EOF errors
        raise read_error(path, e) from e
