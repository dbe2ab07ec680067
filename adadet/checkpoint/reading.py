"""Reading checkpoint files into state dicts, with errors that name the file and the fix.

``torch.load`` runs with ``weights_only=True`` (no arbitrary code) and one addition to
what it accepts: ``argparse.Namespace``, the training arguments the official ADN training
script saves next to the weights (``{"model", "optimizer", "lr_scheduler", "epoch",
"args"}``, optionally ``"model_ema"`` and ``"scaler"``). Anything else that is no tensor or
plain container needs ``trust`` (``--trust`` of the converters).
"""

import argparse
import os
import pickletools
import zipfile
from collections.abc import Mapping
from typing import List, Optional, Tuple

import numpy as np
import torch

from .errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    CheckpointReadError,
    first_few,
)

__all__ = [
    "SAFE_GLOBALS",
    "check_file_exists",
    "EMA_ENTRY",
    "STATE_DICT_NEEDED",
    "describe_contents",
    "has_ema",
    "is_tensor_dict",
    "pickled_strings",
    "read_error",
    "read_torch_file",
    "read_weights",
    "safe_torch_load",
    "select_weights",
    "unwrap_state_dict",
]

#: What a checkpoint must hold, for the messages about files that hold something else.
STATE_DICT_NEEDED = (
    "A checkpoint must hold a state dict, a mapping of parameter names to tensors (what "
    "model.state_dict() returns), at its top level or under 'model' or 'state_dict'"
)

#: The entry of the EMA weights in the official ADN checkpoints of --model-ema runs.
EMA_ENTRY = "model_ema"

#: Python classes a checkpoint may hold besides tensors and plain containers, loaded with
#: ``weights_only=True``: the official ADN (torchvision reference) scripts' ``args``.
SAFE_GLOBALS = [argparse.Namespace]


def is_tensor_dict(obj) -> bool:
    """A non-empty mapping of names to tensors or numpy arrays, i.e. a state dict."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in obj.values())
    )


def unwrap_state_dict(obj) -> Optional[Mapping]:
    """The state dict inside a loaded checkpoint: descends into ``model`` / ``state_dict``
    entries (training scripts save ``{"model": ..., "optimizer": ..., "epoch": ...}``) and
    drops a ``module.`` prefix that (Distributed)DataParallel adds to every key.

    Returns None when no state dict is found.
    """
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


def safe_torch_load(f):
    """``torch.load(f)`` on CPU with ``weights_only=True``, allowing :data:`SAFE_GLOBALS`."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(f, map_location="cpu", weights_only=True)


def pickled_strings(path: str, limit: int = 200_000) -> List[str]:
    """The strings of a torch.save zip file's pickle (its keys, among others), read with
    ``pickletools`` (which runs nothing); empty for other files or on any failure."""
    strings: List[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return []
            data = archive.read(name)
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg)
                if len(strings) >= limit:
                    break
    except Exception:
        return strings
    return strings


def read_error(path: str, error: BaseException) -> CheckpointReadError:
    """Explain why ``path`` could not be read."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Weights only load failed" in str(error):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            unsafe = []
        unsafe = [g for g in unsafe if g not in ("argparse.Namespace",)]
        from .vit_keys import detect_vit_layout  # vit_keys imports nothing of this module

        # The converter for the weights, told by the names the pickle holds.
        keys = [name.split("module.", 1)[-1] for name in pickled_strings(path)]
        kind, converter = ("ResNet", "tools/convert_adn_weights.py")
        if detect_vit_layout(keys):
            kind, converter = ("ViT", "tools/convert_vit_adn_weights.py")
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


def read_torch_file(path: str, *, trust: bool = False):
    """``torch.load`` on CPU, ``weights_only=True`` with :data:`SAFE_GLOBALS` allowed.
    ``trust=True`` allows arbitrary pickled objects (``weights_only=False``): only for
    files from a trusted source."""
    check_file_exists(path)
    try:
        if trust:
            return torch.load(path, map_location="cpu", weights_only=False)
        return safe_torch_load(path)
    except Exception as e:  # any failure of a corrupt file: zip, pickle, key, EOF errors
        raise read_error(path, e) from e


def select_weights(loaded, source: str, *, ema: bool, option: str):
    """What to read the weights from: ``loaded`` itself, or with ``ema`` its
    ``model_ema`` entry as a state dict (``{"model": state_dict}``). ``option`` is how the
    user asks for EMA weights (``MODEL.ADN.LOAD_EMA`` / ``--ema``), for the messages."""
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
            f"(a mapping of names to tensors): a {type(loaded[EMA_ENTRY]).__name__}. Fix: "
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
    """What a loaded file holds, for messages: ``"a single tensor of shape (3, 4)"``,
    ``"a dict with 1 entry: 'a' (int 1)"``."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)} ({obj.dtype}), saved on its own"
    if isinstance(obj, Mapping):
        if not obj:
            return "an empty dict"
        items = [f"{k!r} ({_describe_value(v)})" for k, v in obj.items()]
        count = f"{len(obj)} entr{'y' if len(obj) == 1 else 'ies'}"
        return f"a dict with {count}: {first_few(items, 6)}"
    return f"a {_describe_value(obj)}"


def read_weights(path: str, *, trust: bool = False, ema: bool = False) -> Tuple[Mapping, str]:
    """What the converters read: the state dict of ``path`` (its ``model_ema`` entry with
    ``ema``), and a note for the user ("" or one about EMA weights left unconverted).
    Raises the errors of :func:`read_torch_file` and :func:`select_weights`, and
    CheckpointFormatError when the file holds no state dict."""
    loaded = read_torch_file(path, trust=trust)
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
        raise CheckpointFormatError(
            f"'{path}' holds no state dict: it holds {describe_contents(loaded)}. "
            f"{STATE_DICT_NEEDED}. Nothing was written."
        )
    return state_dict, note
