"""Reading checkpoint files into state dicts, and the errors loading raises: all
``RuntimeError`` subclasses (those about a checkpoint's content also ``ValueError``), each
message naming the file, what is wrong and the fix."""

import argparse
import os
import pickletools
import zipfile
from collections.abc import Mapping
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..utils.messages import first_few

#: Values of ``MODEL.ADN.SKIP_NORM_INIT`` / ``skip_norm_init``: start missing skip norms as
#: copies of their main norms, or raise :class:`SkipNormsMissingError`.
SKIP_NORM_INIT_POLICIES = ("copy", "error")

#: The entry of the EMA weights in the official ADN checkpoints of --model-ema runs.
EMA_ENTRY = "model_ema"

#: Python classes a checkpoint may hold besides tensors and plain containers, read with
#: ``weights_only=True``: the training arguments the official ADN training script saves.
#: Anything else needs ``trust`` (``--trust`` of the converter).
SAFE_GLOBALS = [argparse.Namespace]


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


def is_tensor_dict(obj) -> bool:
    """A non-empty mapping of names to tensors or numpy arrays, i.e. a state dict."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values())
    )


def unwrap_state_dict(obj) -> Optional[Mapping]:
    """The state dict inside a loaded checkpoint, or None: descends into ``model`` /
    ``state_dict`` entries and drops the ``module.`` prefix of (Distributed)DataParallel."""
    for _ in range(4):  # enough for {"model": {"state_dict": ...}}; bounded against cycles
        if is_tensor_dict(obj) or not isinstance(obj, Mapping):
            break
        inner = next(
            (obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None
        )
        if inner is None:
            break
        obj = inner
    if not is_tensor_dict(obj):
        return None
    if all(k.startswith("module.") for k in obj):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return obj  # unchanged (an OrderedDict keeps its _metadata: module versions)


def check_file_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(
            f"Checkpoint '{path}' not found"
            + (" (it is a directory)" if os.path.isdir(path) else "")
            + ". Fix: check the path (MODEL.WEIGHTS when training); a relative path is "
            f"relative to the current directory, {os.getcwd()}."
        )


def torch_load(f, *, trust: bool = False):
    """``torch.load(f)`` on CPU with ``weights_only=True``, allowing :data:`SAFE_GLOBALS`;
    ``trust=True``: ``weights_only=False``, only for files from a trusted source."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(f, map_location="cpu", weights_only=not trust)


def _pickled_keys(path: str, limit: int = 200_000) -> List[str]:
    """The strings of a torch.save zip file's pickle (its keys, among others), without a
    ``module.`` prefix, read with ``pickletools`` (which runs nothing); empty for other
    files or on any failure."""
    strings: List[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            data = b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg.split("module.", 1)[-1])
                if len(strings) >= limit:
                    break
    except Exception:
        pass
    return strings


def read_error(path: str, error: BaseException) -> CheckpointReadError:
    """Explain why ``path`` could not be read."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Weights only load failed" in str(error):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            unsafe = []
        unsafe = [g for g in unsafe if g != "argparse.Namespace"]
        from .vit_keys import detect_vit_layout  # vit_keys imports this module

        # The network the weights are of, told by the names the pickle holds.
        kind = "ViT" if detect_vit_layout(_pickled_keys(path)) else "ResNet"
        converter = "tools/convert_adn_weights.py"
        holds = f" ({', '.join(unsafe[:5])})" if unsafe else ""
        return CheckpointReadError(
            f"Checkpoint '{path}' holds Python objects besides tensors{holds}, which "
            "torch.load refuses with weights_only=True (the default since PyTorch 2.6; "
            "adadet allows argparse.Namespace, the training arguments of the official ADN "
            "checkpoints, and nothing else). Fix, only if you trust its source: for "
            f"ImageNet {kind} weights, convert them once with `python {converter} --trust "
            f"{path} OUT.pkl` and set MODEL.WEIGHTS to OUT.pkl; otherwise re-save its "
            "tensors alone (torch.load(..., weights_only=False)['model'] saved with "
            "torch.save)."
        )
    return CheckpointReadError(
        f"Checkpoint '{path}' could not be read ({type(error).__name__}: {detail}): it is "
        "truncated or corrupt, or not a PyTorch / pickle checkpoint at all. Fix: download "
        "or save it again (compare its size or checksum with the source)."
    )


def select_weights(loaded, source: str, *, ema: bool, option: str):
    """``loaded`` itself, or with ``ema`` its ``model_ema`` entry as ``{"model": state
    dict}``. ``option`` is how the user asks for EMA weights, for the messages."""
    if not ema:
        return loaded
    entries = list(loaded) if isinstance(loaded, Mapping) else []
    if EMA_ENTRY not in entries:
        holds = f"its entries are {first_few(entries, 8)}" if entries else (
            f"it holds a {type(loaded).__name__}, not a dict of entries"
        )
        raise CheckpointFormatError(
            f"{option} asks for the EMA weights, but checkpoint '{source}' has no "
            f"'{EMA_ENTRY}' entry ({holds}); only runs trained with --model-ema save one. "
            f"Fix: turn {option} off to load its 'model' weights, or use the checkpoint of a "
            "--model-ema run."
        )
    entry = loaded[EMA_ENTRY]
    state_dict = None
    if isinstance(entry, Mapping):
        # torchvision's ExponentialMovingAverage (an AveragedModel) prefixes every weight
        # with "module." and adds the counter n_averaged; others save a bare state dict.
        ignored = ("n_averaged", "module.n_averaged")
        state_dict = unwrap_state_dict({k: v for k, v in entry.items() if k not in ignored})
    if state_dict is None:
        raise CheckpointFormatError(
            f"Checkpoint '{source}' has a '{EMA_ENTRY}' entry, but it holds no state dict "
            f"(a mapping of names to tensors): a {type(entry).__name__}. Fix: "
            f"turn {option} off to load its 'model' weights."
        )
    return {"model": dict(state_dict)}


def has_ema(loaded) -> bool:
    return isinstance(loaded, Mapping) and EMA_ENTRY in loaded


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


def read_weights(path: str, *, trust: bool = False, ema: bool = False) -> Tuple[Mapping, str]:
    """What the converter reads: the state dict of ``path`` (its ``model_ema`` entry with
    ``ema``), and a note for the user ("" or one about EMA weights left unconverted)."""
    check_file_exists(path)
    try:
        loaded = torch_load(path, trust=trust)
    except Exception as e:  # any failure of a corrupt file: zip, pickle, key, EOF errors
        raise read_error(path, e) from e
    note = ""
    if has_ema(loaded) and not ema:
        note = (
            f"'{path}' also holds '{EMA_ENTRY}', the EMA weights of a --model-ema run "
            "(the official ADN accuracies are those): converting its 'model' weights; "
            "--ema converts the EMA weights instead."
        )
    loaded = select_weights(loaded, path, ema=ema, option="--ema")
    state_dict = unwrap_state_dict(loaded)
    if state_dict is None:
        raise no_state_dict_error(path, loaded, "Nothing was written.")
    return state_dict, note
