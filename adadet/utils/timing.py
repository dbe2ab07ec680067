"""Latency: wall time with the device synchronised on both sides. CUDA runs kernels
asynchronously; without the synchronisation a call would be timed as the time it takes to
launch its kernels, and the wait would land in whatever runs next."""
import statistics
import time
from typing import List, Optional

import torch
import torch.nn as nn

__all__ = ["synchronize", "Stopwatch", "ForwardTimer"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """``with Stopwatch(device) as watch: ...`` leaves the block's wall time in
    ``watch.seconds``; ``start()`` / ``stop()`` for a span that is no block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: Optional[float] = None

    def start(self) -> None:
        synchronize(self.device)
        self._started = time.perf_counter()

    def stop(self) -> float:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._started
        return self.seconds

    def __enter__(self) -> "Stopwatch":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ForwardTimer:
    """Records the wall time of every forward call of ``module`` inside the block: the
    model call alone, whatever the caller does around it (data loading, resizing)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.seconds: List[float] = []
        device = next((p.device for p in module.parameters() if p.is_cuda), torch.device("cpu"))
        self._watch = Stopwatch(device)

    def _start(self, module, args) -> None:
        self._watch.start()

    def _stop(self, module, args, output) -> None:
        self.seconds.append(self._watch.stop())

    def __enter__(self) -> "ForwardTimer":
        self._handles = [
            self.module.register_forward_pre_hook(self._start),
            self.module.register_forward_hook(self._stop),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def median_ms(self) -> float:
        return 1000.0 * statistics.median(self.seconds) if self.seconds else float("nan")
