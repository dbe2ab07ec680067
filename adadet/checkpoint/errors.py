"""Errors raised while loading weights. All are ``RuntimeError`` subclasses (the ones about
the content of a checkpoint also ``ValueError``), so callers can catch either, and each
message names the file, what is wrong and the fix."""

from typing import Sequence

__all__ = [
    "SKIP_NORM_INIT_POLICIES",
    "check_skip_norm_init",
    "first_few",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointReadError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "SkipNormsMissingError",
    "WeightsConfigError",
]

#: Values of ``MODEL.ADN.SKIP_NORM_INIT`` / ``skip_norm_init``: start missing skip norms as
#: copies of their main norms, or raise :class:`SkipNormsMissingError`.
SKIP_NORM_INIT_POLICIES = ("copy", "error")


def check_skip_norm_init(policy: str) -> None:
    if policy not in SKIP_NORM_INIT_POLICIES:
        raise ValueError(
            f"skip_norm_init (MODEL.ADN.SKIP_NORM_INIT) is {policy!r}; use one of "
            f"{list(SKIP_NORM_INIT_POLICIES)}."
        )


def first_few(items: Sequence, count: int = 5) -> str:
    """``'a, b, c, ... (12 in all)'`` for error messages."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:count])
    return shown + (f", ... ({len(items)} in all)" if len(items) > count else "")


class CheckpointError(RuntimeError):
    """Base class: a checkpoint could not be loaded into the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class CheckpointReadError(CheckpointError):
    """The file exists but cannot be read: truncated, corrupt, or holding Python objects
    that ``torch.load`` refuses by default."""


class CheckpointFormatError(CheckpointError, ValueError):
    """The file was read but holds no state dict adadet knows how to load."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The checkpoint does not fit the model's backbone: other architecture or depth,
    shape mismatches, missing or extra backbone weights."""


class SkipNormsMissingError(CheckpointMismatchError):
    """The checkpoint has no skip norms and the policy (``MODEL.ADN.SKIP_NORM_INIT: error``)
    forbids starting them from the main norms."""


class WeightsConfigError(ValueError):
    """The config does not match the conventions the weights were trained with."""
