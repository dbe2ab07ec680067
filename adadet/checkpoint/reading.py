"""Reading checkpoint files into state dicts: the file itself (``weights_only`` unless
trusted), the state dict inside what it holds, and its EMA weights when asked for.
"""

import argparse
import os
from collections.abc import Mapping
from typing import Optional, Tuple

import numpy as np
import torch

from ..utils.messages import first_few
from .errors import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    no_state_dict_error,
    read_error,
)

#: The entry of the EMA weights in the official ADN checkpoints of --model-ema runs.
EMA_ENTRY = "model_ema"

#: Python classes a checkpoint may hold besides tensors and plain containers, read with
#: ``weights_only=True``: the training arguments the official ADN training script saves.
#: Anything else needs ``trust`` (``--trust`` of the converter).
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


def read_weights(
    path: str, *, converter: str, trust: bool = False, ema: bool = False
) -> Tuple[Mapping, str]:
    """What a converter reads: the state dict of ``path`` (its ``model_ema`` entry with
    ``ema``), and a note for the user ("" or one about EMA weights left unconverted).
    ``converter``: the tool reading, for the message of a file that needs ``--trust``."""
    check_file_exists(path)
    try:
        loaded = torch_load(path, trust=trust)
    except Exception as e:  # any failure of a corrupt file: zip, pickle, key, EOF errors
        raise read_error(path, e, converter=converter) from e
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
