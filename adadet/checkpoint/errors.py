"""The errors loading and converting weights raise, and the messages they carry.

Those about a checkpoint are ``CheckpointError``, a ``RuntimeError`` (those about its
content also ``ValueError``); ``WeightsConfigError``, about the config, is a ``ValueError``.
Each message names the file, what is wrong and the fix. This module knows no key layout
and reads no file, so that every other module of the package can raise them.
"""

from collections.abc import Mapping
from typing import List

import torch

from ..utils.messages import first_few

#: Values of ``MODEL.ADN.SKIP_NORM_INIT`` / ``skip_norm_init``: start missing skip norms as
#: copies of their main norms, or raise :class:`SkipNormsMissingError`.
SKIP_NORM_INIT_POLICIES = ("copy", "error")


class CheckpointError(RuntimeError):
    """Base class: a checkpoint could not be loaded into the model, or written."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class CheckpointReadError(CheckpointError):
    """The file exists but cannot be read: truncated, corrupt, or holding Python objects
    that ``torch.load`` refuses by default."""


class CheckpointFormatError(CheckpointError, ValueError):
    """The file was read but holds no state dict adadet knows how to load."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (the disk is full); nothing saved before changed."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The checkpoint does not fit the model's backbone: other architecture or depth,
    shape mismatches, missing or extra backbone weights."""


class SkipNormsMissingError(CheckpointMismatchError):
    """The checkpoint has no skip norms and ``MODEL.ADN.SKIP_NORM_INIT: error`` forbids
    starting them from the main norms."""


class WeightsConfigError(ValueError):
    """The config does not match the conventions the weights were trained with."""


def check_skip_norm_init(policy: str) -> None:
    if policy not in SKIP_NORM_INIT_POLICIES:
        raise ValueError(
            f"skip_norm_init (MODEL.ADN.SKIP_NORM_INIT) is {policy!r}; use one of "
            f"{list(SKIP_NORM_INIT_POLICIES)}."
        )


def read_error(path: str, error: BaseException, *, converter: str) -> CheckpointReadError:
    """Explain why ``path`` could not be read. ``converter``: the tool that converts such a
    file once with ``--trust`` (named by the caller, which knows what it reads)."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Weights only load failed" in str(error):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            unsafe = []
        unsafe = [g for g in unsafe if g != "argparse.Namespace"]
        holds = f" ({', '.join(unsafe[:5])})" if unsafe else ""
        return CheckpointReadError(
            f"Checkpoint '{path}' holds Python objects besides tensors{holds}, which "
            "torch.load refuses with weights_only=True (the default since PyTorch 2.6; "
            "adadet allows argparse.Namespace, the training arguments of the official ADN "
            "checkpoints, and nothing else). Fix, only if you trust its source: for "
            f"ImageNet ResNet or ViT weights, convert them once with `python {converter} "
            f"--trust {path} OUT.pkl` and set MODEL.WEIGHTS to OUT.pkl; otherwise re-save "
            "its tensors alone (torch.load(..., weights_only=False)['model'] saved with "
            "torch.save)."
        )
    return CheckpointReadError(
        f"Checkpoint '{path}' could not be read ({type(error).__name__}: {detail}): it is "
        "truncated or corrupt, or not a PyTorch / pickle checkpoint at all. Fix: download "
        "or save it again (compare its size or checksum with the source)."
    )


def _describe_value(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)}"
    if isinstance(value, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in value.values())
        return f"dict of {len(value)} entries, {tensors} of them tensors"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)} items"
    if isinstance(value, (bool, int, float)) or value is None:
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"str {value[:40]!r}"
    return type(value).__name__


def describe_contents(obj) -> str:
    """What a loaded file holds: ``"a single tensor of shape (3, 4)"``, ``"a dict with 1
    entry: 'a' (int 1)"``."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)} ({obj.dtype}), saved on its own"
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty dict"
        items = [f"{k!r} ({_describe_value(v)})" for k, v in obj.items()]
        count = f"{len(obj)} entr{'y' if len(obj) == 1 else 'ies'}"
        return f"a dict with {count}: {first_few(items, 6)}"
    return f"a {_describe_value(obj)}"


def no_state_dict_error(source: str, contents, fix: str) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"Checkpoint '{source}' holds no state dict: it holds {describe_contents(contents)}. "
        "A checkpoint must hold a state dict, a mapping of parameter names to tensors (what "
        "model.state_dict() returns), at its top level or under 'model' or 'state_dict'. "
        + fix
    )


def unknown_keys_error(source: str, unknown: List[str], network: str, official: str, fix=""):
    """Keys of a checkpoint that no rule of ``network`` (e.g. "ResNet") knows; ``fix``: one
    more way out, after the first."""
    return CheckpointFormatError(
        f"Checkpoint '{source}' looks like a torchvision-layout {network} but {len(unknown)} of "
        f"its keys fit neither torchvision's {network} nor the official {official}: "
        f"{first_few(unknown)}. Loading the rest would leave part of the backbone untrained. "
        f"Fix: use an unmodified torchvision or official {official} checkpoint{fix}."
    )
