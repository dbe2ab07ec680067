"""What a training run will need, checked before its first iteration: a mistake in any
of it (a misspelt evaluation dataset, an output folder that cannot be written, no room for
a checkpoint) would otherwise surface only after the training it wasted, or at a save."""
import shutil
from typing import Iterable

import torch.nn as nn

from ..data.availability import check_datasets_available
from ..utils.writable import unwritable_reason
from .output_lock import check_output_dir_free

#: A checkpoint holds the weights and the optimizer's state (SGD momentum or Adam's two
#: moments: up to 2 more copies of the weights), plus a margin.
CHECKPOINT_COPIES = 3.5


def checkpoint_bytes(model: nn.Module) -> int:
    """An upper estimate of one checkpoint of ``model`` (weights and optimizer state)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return int(CHECKPOINT_COPIES * sum(t.numel() * t.element_size() for t in tensors))


def check_output_dir(output_dir: str, key: str, model: nn.Module) -> None:
    """``output_dir`` can be created and written, and has room for one checkpoint."""
    output_dir = output_dir or "."  # Detectron2 then writes into the working directory
    reason = unwritable_reason(output_dir)
    if reason is not None:
        raise PermissionError(
            f"{key} {output_dir} cannot be written to ({reason}): give a folder "
            f"in a writable place, e.g. {key} ./output/run1."
        )
    need, free = checkpoint_bytes(model), shutil.disk_usage(output_dir).free
    if free < need:
        raise OSError(
            f"{key} {output_dir} has {free / 2**20:.0f} MiB free, and one checkpoint of this "
            f"model (weights and optimizer state) needs about {need / 2**20:.0f} MiB: free "
            f"some space or give {key} on another disk."
        )


def check_run_needs(model: nn.Module, datasets: Iterable[str], output_dir: str,
                    output_key: str) -> None:
    """Every dataset the run trains or evaluates on is registered and on disk, its output
    folder takes a checkpoint (:func:`check_output_dir`) and no other run writes there
    (:mod:`~adadet.engine.output_lock`)."""
    check_datasets_available(list(dict.fromkeys(datasets)))
    check_output_dir(output_dir, output_key, model)
    check_output_dir_free(output_dir, output_key)
