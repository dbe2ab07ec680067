"""DATALOADER.EXACT_RESUME: an interrupted and resumed run ends with the weights of an
uninterrupted one, on a data set of several batches."""
import pytest
from detectron2.engine import HookBase
from detectron2.utils.env import seed_all_rng

from adadet.data.resumable_loader import ResumableBatches
from adadet.engine import ADNTrainer
from engine_tiny_data import tiny_cfg


class _Stop(Exception):
    pass


class _InterruptAfter(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            raise _Stop()


def _cfg(out, exact):
    cfg = tiny_cfg(str(out))
    cfg.merge_from_list([
        "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "SEED", "3",
        "DATASETS.TEST", "()", "DATALOADER.EXACT_RESUME", str(exact),
    ])
    return cfg


def _train(cfg, resume=False, interrupt_after=None):
    seed_all_rng(cfg.SEED)  # as train_net's default_setup: the same initial weights
    trainer = ADNTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    if interrupt_after is not None:
        trainer.register_hooks([_InterruptAfter(interrupt_after)])
    try:
        trainer.train()
    except _Stop:
        pass
    return {k: v.clone() for k, v in trainer.detector.state_dict().items()}


def _interrupted_then_resumed(out, exact):
    # checkpoint after iteration 1, stopped after iteration 2, resumed from iteration 2
    _train(_cfg(out, exact), interrupt_after=2)
    return _train(_cfg(out, exact), resume=True)


def _max_difference(a, b):
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tiny_dataset, tmp_path):
    uninterrupted = _train(_cfg(tmp_path / "a", True))
    resumed = _interrupted_then_resumed(tmp_path / "b", True)
    assert _max_difference(uninterrupted, resumed) == 0.0
    # Detectron2's own loader starts its image stream again: the weights differ
    plain = _train(_cfg(tmp_path / "c", False))
    plain_resumed = _interrupted_then_resumed(tmp_path / "d", False)
    assert _max_difference(plain, plain_resumed) > 1e-4


def test_batches_depend_on_seed_and_index_only():
    groups = [0] * 7 + [1] * 9
    a, b = ResumableBatches(groups, 2, seed=5), ResumableBatches(groups, 2, seed=5)
    late_first = b.batch(23)  # computed before the earlier ones
    assert [a.batch(k) for k in range(30)][23] == late_first
    epoch = [a.batch(k) for k in range(7)]  # 3 + 4 batches: one landscape image dropped
    assert len({i for batch in epoch for i in batch}) == 14
    assert all(len({groups[i] for i in batch}) == 1 for batch in epoch)
    assert epoch != [ResumableBatches(groups, 2, seed=6).batch(k) for k in range(7)]
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        ResumableBatches([0, 1], 2, seed=0)


def test_exact_resume_needs_a_fixed_seed(tiny_dataset, tmp_path):
    cfg = _cfg(tmp_path, True)
    cfg.SEED = -1
    with pytest.raises(ValueError, match="fixed SEED"):
        ADNTrainer(cfg)
