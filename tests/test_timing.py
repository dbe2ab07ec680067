"""The latency timers: every forward call of a module inside the block, the call alone."""
import math
import time

import torch
import torch.nn as nn

from adadet.utils.timing import ForwardTimer, Stopwatch


class Sleeper(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        time.sleep(self.seconds)
        return x + self.weight


def test_stopwatch_times_its_block():
    with Stopwatch(torch.device("cpu")) as watch:
        time.sleep(0.01)
    assert watch.seconds >= 0.01


def test_forward_timer_records_each_call_inside_the_block_only():
    module = Sleeper(0.01)
    with ForwardTimer(module) as timer:
        for _ in range(3):
            module(torch.ones(1))
            time.sleep(0.2)  # outside the forward call: not timed
    module(torch.ones(1))  # after the block: the hooks are gone
    assert len(timer.seconds) == 3
    assert all(0.01 <= s < 0.2 for s in timer.seconds)
    assert timer.median_ms() >= 10
    assert math.isnan(ForwardTimer(module).median_ms())  # nothing timed
