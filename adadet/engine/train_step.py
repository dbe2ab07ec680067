"""The ADN training step: Detectron2's own ``SimpleTrainer`` / ``AMPTrainer``.

:class:`adadet.modeling.SelfDistillationModel` returns weighted loss terms whose plain sum
is the self-distillation loss, as every Detectron2 model does, and draws its students
from the EventStorage's iteration, so Detectron2's step runs it unchanged (with
``zero_grad_before_forward``, ``async_write_metrics`` and ``log_grad_scaler`` where the
installed Detectron2 has them). ADN adds two things:

* a non-finite loss term stops every rank, naming the terms and the iteration
  (Detectron2 checks on the main process only, and the other ranks then wait forever in
  the next collective);
* ``SOLVER.AMP.ENABLED`` on CPU autocasts the forward to bfloat16 (Detectron2's
  AMPTrainer requires CUDA); bfloat16 needs no gradient scaling.
"""
import inspect
import math
from typing import Mapping

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm

__all__ = ["ADNAMPTrainStep", "ADNTrainStep", "stop_if_not_finite"]


def stop_if_not_finite(loss_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
    """Raise FloatingPointError on every rank when a term of ``loss_dict`` is not finite
    on any rank, naming those terms and the iteration. A collective: every rank calls it."""
    values = {k: float(v.detach()) for k, v in loss_dict.items()}
    all_values = comm.all_gather(values)
    bad = sorted({k for rank in all_values for k, v in rank.items() if not math.isfinite(v)})
    if bad:
        mean = {k: sum(rank[k] for rank in all_values) / len(all_values) for k in values}
        raise FloatingPointError(
            f"Loss became infinite or NaN at iteration={iteration}: non-finite term(s) "
            f"{bad}.\nloss_dict = {mean}"
        )


class _StopOnNonFinite:
    """Checks the terms of every rank before Detectron2 writes them."""

    def _write_metrics(self, loss_dict, data_time, *args, **kwargs):
        stop_if_not_finite(loss_dict, kwargs.get("iter", self.iter))
        super()._write_metrics(loss_dict, data_time, *args, **kwargs)

    def restart_data(self) -> None:
        """Start a new iterator of the data loader (after it was moved to another start)."""
        if isinstance(getattr(type(self), "_data_loader_iter", None), property):
            self._data_loader_iter_obj = None  # detectron2 main: made on first use
        else:
            self._data_loader_iter = iter(self.data_loader)  # v0.6


class ADNTrainStep(_StopOnNonFinite, SimpleTrainer):
    """Detectron2's ``SimpleTrainer``; a non-finite loss term stops every rank."""


class ADNAMPTrainStep(_StopOnNonFinite, AMPTrainer):
    """Detectron2's ``AMPTrainer`` on CUDA (float16 and a GradScaler, or ``precision``);
    on CPU, Detectron2's ``SimpleTrainer`` step with the forward autocast to bfloat16 (and
    a disabled GradScaler, so that checkpoints hold the same entries)."""

    def __init__(self, model, data_loader, optimizer, *args, grad_scaler=None,
                 precision=None, **kwargs):
        self.on_cuda = next(model.parameters()).device.type == "cuda"
        if grad_scaler is None:
            grad_scaler = torch.amp.GradScaler("cuda", enabled=self.on_cuda)
        if precision is not None and "precision" in inspect.signature(AMPTrainer).parameters:
            kwargs["precision"] = precision  # Detectron2 v0.6 autocasts to float16 only
        super().__init__(model, data_loader, optimizer, *args, grad_scaler=grad_scaler, **kwargs)
        if not self.on_cuda:
            self.precision = precision or torch.bfloat16
            self._autocast_handles = _autocast_forward(model, "cpu", self.precision)

    def run_step(self):
        if self.on_cuda:
            return super().run_step()
        return SimpleTrainer.run_step(self)


def _autocast_forward(model: torch.nn.Module, device_type: str, dtype: torch.dtype):
    """Run every forward call of ``model`` under ``torch.autocast`` (what AMPTrainer does
    around its model call), so that an unchanged step autocasts the forward only, not the
    backward or the optimizer step. Returns the hooks' handles."""
    active = []

    def enter(module, args):
        context = torch.autocast(device_type=device_type, dtype=dtype)
        context.__enter__()
        active.append(context)

    def leave(module, args, output):
        active.pop().__exit__(None, None, None)

    return (
        model.register_forward_pre_hook(enter),
        model.register_forward_hook(leave, always_call=True),
    )
