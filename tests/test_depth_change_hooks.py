"""Depth-change hooks of AdaptiveDepthModule: called after set_depth, removable, owned by
one model (copies and unpickled models have their own), invisible to tracing."""
import copy
import pickle

import torch
import torch.nn as nn

from adadet import set_depth, using_depth
from adadet.depth import AdaptiveDepthModule


class TwoStages(AdaptiveDepthModule):
    """The smallest adaptive module: stage i adds 1 unless it skips."""

    num_adaptive_stages = 2

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.set_depth("FF")

    def _apply_skip_flags(self, flags):
        self.runs = sum(not skip for skip in flags)

    def forward(self, x):
        return x * self.scale + self.runs


class Recorder:
    """A picklable hook: remembers the depths it was told of."""

    def __init__(self):
        self.seen = []

    def __call__(self, module, depth):
        self.seen.append((module, depth))


def test_hooks_are_called_after_each_depth_change_until_removed():
    module, recorder = TwoStages(), Recorder()
    handle = module.register_depth_change_hook(recorder)
    assert module.depth_change_hooks == (recorder,)
    set_depth(module, "TF")
    with using_depth(module, "base"):
        assert module.runs == 0
    assert recorder.seen == [(module, "TF"), (module, "TT"), (module, "TF")]
    handle.remove()
    module.set_depth("FF")
    assert len(recorder.seen) == 3 and module.depth_change_hooks == ()
    assert TwoStages().depth_change_hooks == ()  # nothing shared between models


def test_copies_and_unpickled_models_have_their_own_hooks():
    module, recorder = TwoStages(), Recorder()
    module.register_depth_change_hook(recorder)
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        (hook,) = clone.depth_change_hooks
        assert hook is not recorder
        clone.set_depth("TT")
        assert hook.seen[-1] == (clone, "TT")
    assert recorder.seen == []


def test_tracing_a_hooked_module_keeps_its_depth():
    module, recorder = TwoStages(), Recorder()
    module.register_depth_change_hook(recorder)
    module.set_depth("TF")
    traced = torch.jit.trace(module, (torch.zeros(1),))
    module.set_depth("FF")
    assert traced(torch.zeros(1)).item() == 1.0
    assert [depth for _, depth in recorder.seen] == ["TF", "FF"]
