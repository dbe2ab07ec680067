"""A depth chosen with ``using_depth`` belongs to the thread (or asyncio task) that chose
it: one model serves several depths at once, and ``set_depth`` stays the default that
every thread sees outside such blocks."""
import asyncio
import threading
import time

import pytest
import torch
from detectron2.modeling import build_model

from adadet import get_depth, set_depth, using_depth
from adn_testing import make_project_cfg

SETTINGS = ("FFFFFFF", "TTTTTTT")  # the whole detector's two ends: stages, norms, FPN differ


@pytest.fixture(scope="module")
def whole_model():
    torch.manual_seed(0)
    model = build_model(make_project_cfg("mask_rcnn_ada_r18_textures_whole_cpu.yaml")).eval()
    for p in model.parameters():  # the FPN's refinements start at zero: make them count
        p.data.add_(0.05 * torch.randn_like(p))
    return model


def _features(model, image):
    with torch.no_grad():
        return model.backbone(image)["p2"]


def test_two_threads_each_run_their_own_depth_at_once(whole_model):
    image = torch.randn(1, 3, 64, 96)
    reference = {}
    for setting in SETTINGS:
        with using_depth(whole_model, setting):
            reference[setting] = _features(whole_model, image)
    assert not torch.allclose(*reference.values(), atol=1e-3)
    both_inside = threading.Barrier(2, timeout=60)
    outputs = {s: [] for s in SETTINGS}
    seen = {s: [] for s in SETTINGS}

    def serve(setting):
        for _ in range(10):
            with using_depth(whole_model, setting):
                both_inside.wait()  # the other thread has switched to its setting too
                seen[setting].append(get_depth(whole_model))
                outputs[setting].append(_features(whole_model, image))
                both_inside.wait()

    threads = [threading.Thread(target=serve, args=(s,)) for s in SETTINGS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for setting in SETTINGS:
        assert seen[setting] == [setting] * 10
        assert len(outputs[setting]) == 10
        for out in outputs[setting]:
            torch.testing.assert_close(out, reference[setting], rtol=1e-4, atol=1e-5)
    assert get_depth(whole_model) == "FFFFFFF"  # the default did not move


def test_set_depth_is_the_default_that_threads_outside_a_block_see(whole_model):
    inside, checked = threading.Event(), threading.Event()
    outside_saw = []

    def block():
        with using_depth(whole_model, "TTTTTTT"):
            inside.set()
            checked.wait(60)

    set_depth(whole_model, "TTFFFFF")
    try:
        thread = threading.Thread(target=block)
        thread.start()
        inside.wait(60)
        outside_saw.append(get_depth(whole_model))  # this thread is in no block
        with using_depth(whole_model, "FFFFTFF"):  # nor does a block here see the other
            outside_saw.append(get_depth(whole_model))
        checked.set()
        thread.join()
        assert outside_saw == ["TTFFFFF", "FFFFTFF"]
        assert get_depth(whole_model) == "TTFFFFF"
    finally:
        set_depth(whole_model, "super")


def test_asyncio_tasks_each_keep_their_depth(whole_model):
    async def serve(setting, seen):
        with using_depth(whole_model, setting):
            for _ in range(3):
                await asyncio.sleep(0)  # the other task runs here, inside its own block
                seen.append(get_depth(whole_model))

    async def main():
        seen = {s: [] for s in SETTINGS}
        await asyncio.gather(*(serve(s, seen[s]) for s in SETTINGS))
        return seen

    seen = asyncio.run(main())
    assert seen == {s: [s] * 3 for s in SETTINGS}


def test_a_model_whose_depth_moves_shared_state_runs_one_block_at_a_time(whole_model):
    """A depth-change hook (per-depth BN statistics) writes state every thread shares:
    blocks on that model wait for each other instead of mixing it."""
    inside, most = [0], [0]
    lock = threading.Lock()

    class Watch:
        def __call__(self, module, depth):
            pass

    handle = whole_model.backbone.bottom_up.register_depth_change_hook(Watch())

    def serve(setting):
        for _ in range(5):
            with using_depth(whole_model, setting):
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.002)
                with lock:
                    inside[0] -= 1

    try:
        threads = [threading.Thread(target=serve, args=(s,)) for s in SETTINGS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        handle.remove()
    assert most[0] == 1
