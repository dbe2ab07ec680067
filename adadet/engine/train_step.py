"""The ADN training step: Detectron2's ``SimpleTrainer`` / ``AMPTrainer`` whose step
back-propagates the self-distillation total loss once and logs every term.

load batch -> both passes (:class:`adadet.modeling.SelfDistillationModel`) -> zero_grad ->
backward -> write metrics -> optimizer step.
"""
import time
from typing import Mapping

import numpy as np
import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch.nn.parallel import DistributedDataParallel

from ..modeling.self_distillation import SUB_PREFIX, SUPER_PREFIX, TOTAL_KEY, SelfDistillationModel

__all__ = ["ADNAMPTrainStep", "ADNTrainStep", "write_loss_metrics"]


def write_loss_metrics(
    loss_dict: Mapping[str, torch.Tensor], total: torch.Tensor, data_time: float
) -> None:
    """Detectron2's ``SimpleTrainer.write_metrics`` for weighted terms: gathers the terms
    of all ranks (on every rank), logs their means to the EventStorage (so to
    metrics.json / TensorBoard), plus ``total_loss`` (what was back-propagated) and, for
    prefixed terms, ``super/total_loss`` / ``sub/total_loss`` (unweighted sums of each
    pass's task losses).

    Raises FloatingPointError naming the non-finite terms and the iteration, on every rank.
    """
    metrics = {k: v.detach().cpu().item() for k, v in loss_dict.items()}
    metrics[TOTAL_KEY] = total.detach().cpu().item()
    metrics["data_time"] = data_time
    # Every rank gets every rank's terms, so all of them stop on a non-finite loss (with
    # Detectron2's gather only the main process would, leaving the others waiting).
    all_metrics = comm.all_gather(metrics)
    storage = get_event_storage()
    # The slowest rank's data time is the latency the loader caused.
    data_time = np.max([m.pop("data_time") for m in all_metrics])
    metrics = {k: float(np.mean([m[k] for m in all_metrics])) for k in all_metrics[0]}
    if not np.isfinite(metrics[TOTAL_KEY]):
        bad = sorted(k for k, v in metrics.items() if not np.isfinite(v) and k != TOTAL_KEY)
        raise FloatingPointError(
            f"Loss became infinite or NaN at iteration={storage.iter}: non-finite term(s) "
            f"{bad or [TOTAL_KEY]}.\nloss_dict = {metrics}"
        )
    if not comm.is_main_process():
        return
    storage.put_scalar("data_time", data_time)
    for prefix in (SUPER_PREFIX, SUB_PREFIX):
        task_terms = [v for k, v in metrics.items() if k.startswith(prefix)]
        if task_terms:
            metrics[prefix + TOTAL_KEY] = float(sum(task_terms))
    storage.put_scalar(TOTAL_KEY, metrics.pop(TOTAL_KEY))
    if metrics:
        storage.put_scalars(**metrics)


class _ADNStepMixin:
    """The parts shared by the FP32 and AMP steps."""

    def _load_batch(self):
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    def _compute_losses(self, data):
        """(total loss to back-propagate, dict of the terms to log)."""
        inner = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        if isinstance(inner, SelfDistillationModel):
            loss_dict = self.model(data, iteration=self.iter)
        else:
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            return loss_dict, {}
        loss_dict = dict(loss_dict)
        total = loss_dict.pop(TOTAL_KEY) if TOTAL_KEY in loss_dict else sum(loss_dict.values())
        return total, loss_dict

    def restart_data(self):
        """Start a new iterator of the data loader (after it was moved to another start)."""
        if isinstance(getattr(type(self), "_data_loader_iter", None), property):
            self._data_loader_iter_obj = None  # detectron2 main: made on first use
        else:
            self._data_loader_iter = iter(self.data_loader)  # v0.6

    def _after_backward(self):
        # Detectron2 main has an after_backward hook stage; v0.6 does not.
        after_backward = getattr(self, "after_backward", None)
        if after_backward is not None:
            after_backward()


class ADNTrainStep(_ADNStepMixin, SimpleTrainer):
    """``SimpleTrainer`` whose step back-propagates the ADN total loss once:
    load batch -> losses (both passes) -> zero_grad -> backward -> write metrics -> step."""

    def run_step(self):
        assert self.model.training, "[ADNTrainStep] model was changed to eval mode!"
        data, data_time = self._load_batch()
        total, loss_dict = self._compute_losses(data)
        self.optimizer.zero_grad()
        total.backward()
        self._after_backward()
        write_loss_metrics(loss_dict, total, data_time)
        self.optimizer.step()


class ADNAMPTrainStep(_ADNStepMixin, AMPTrainer):
    """``AMPTrainer`` with the ADN step: both passes under autocast, one scaled backward.

    On CUDA it autocasts to ``precision`` (float16) with a GradScaler, like Detectron2's
    AMPTrainer; on CPU it autocasts to bfloat16 and the scaler is disabled (no-op).
    """

    def __init__(self, model, data_loader, optimizer, grad_scaler=None, precision=None):
        cuda = torch.cuda.is_available()
        if grad_scaler is None:
            grad_scaler = _grad_scaler(enabled=cuda)
        super().__init__(model, data_loader, optimizer, grad_scaler=grad_scaler)
        self.autocast_device = "cuda" if cuda else "cpu"
        self.precision = precision or (torch.float16 if cuda else torch.bfloat16)

    def run_step(self):
        assert self.model.training, "[ADNAMPTrainStep] model was changed to eval mode!"
        data, data_time = self._load_batch()
        with torch.autocast(device_type=self.autocast_device, dtype=self.precision):
            total, loss_dict = self._compute_losses(data)
        self.optimizer.zero_grad()
        self.grad_scaler.scale(total).backward()
        self._after_backward()
        write_loss_metrics(loss_dict, total, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()


def _grad_scaler(enabled: bool):
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)
