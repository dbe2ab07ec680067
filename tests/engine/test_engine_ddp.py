"""Two CPU processes (gloo) with DistributedDataParallel, against one process.

Both passes run inside one DDP forward, so DDP accepts the steps: without
find_unused_parameters for the paper's student "TTTT" (DDP would report unused
parameters at the second step otherwise), with it for students that keep some stage full.
After NUM_STEPS steps the weights equal one process on the combined batch, with GroupNorm,
FrozenBN and synchronized BN (see engine_ddp_worker for why the comparison is exact).
A non-finite loss on one rank stops all of them.
"""
import pytest
import torch
import torch.multiprocessing as mp
from detectron2.modeling import build_model

import engine_ddp_worker as w
from adadet.engine import SelfDistillationModel, ddp_kwargs


@pytest.mark.parametrize(
    "norm, subnets, freeze_at",
    [
        ("GN", ["TTTT"], 2),
        ("FrozenBN", ["TTTT"], 2),
        ("naiveSyncBN", ["TFFF", "FFTT", "TTTT"], 2),
        ("GN", ["TTTT"], 0),  # a trainable stem, computed once for both passes
    ],
)
def test_two_processes_equal_one_process_on_the_combined_batch(
    tiny_dataset, tmp_path, norm, subnets, freeze_at
):
    cfg = w.exact_split_cfg(norm, subnets, freeze_at=freeze_at)
    torch.manual_seed(0)
    initial = build_model(cfg)
    wrapper = SelfDistillationModel.from_config(cfg, initial)
    # what ADNTrainer passes to create_ddp_model
    assert ddp_kwargs(wrapper, cfg.MODEL.DEVICE) == {
        "broadcast_buffers": False,
        "device_ids": None,
        "find_unused_parameters": subnets != ["TTTT"],
    }
    students = {wrapper.students_for_iteration(i)[0] for i in range(w.NUM_STEPS)}
    assert len(students) == min(len(subnets), 2)  # several students are really trained

    out_file = str(tmp_path / "ddp_state.pth")
    mp.spawn(
        w.worker,
        args=(2, str(tmp_path / "dist_init"), tiny_dataset, out_file, norm, subnets, freeze_at),
        nprocs=2,
        join=True,
    )
    ddp_state = torch.load(out_file)
    reference_cfg = w.exact_split_cfg(norm, subnets, distributed=False, freeze_at=freeze_at)
    single_state = w.train(reference_cfg, w.batch(cfg, [0, 1]), ddp=False)

    compared = [n for n, _ in initial.named_parameters()]
    # Running means too; NaiveSyncBatchNorm's running variance is the biased estimate
    # (plain BN's is unbiased), and it does not count batches.
    compared += [n for n in single_state if n.endswith("running_mean")]
    atol = 1e-5  # float rounding of split reductions, over NUM_STEPS steps
    moved, largest_update = [], 0.0
    for name in compared:
        torch.testing.assert_close(
            ddp_state[name], single_state[name], rtol=1e-4, atol=atol, msg=lambda m: f"{name}: {m}"
        )
        update = (single_state[name] - initial.state_dict()[name]).abs().max().item()
        moved.append(update > 0)
        largest_update = max(largest_update, update)
    # the comparison is about real updates, far above the tolerance
    assert sum(moved) > len(moved) // 2 and largest_update > 100 * atol


def test_non_finite_loss_on_one_rank_stops_every_rank(tiny_dataset, tmp_path):
    mp.spawn(
        w.non_finite_worker,
        args=(2, str(tmp_path / "dist_init"), tiny_dataset, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    for rank in (0, 1):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("FloatingPointError"), f"rank {rank}: {outcome}"
        assert "iteration=1" in outcome and "['sub/loss_box_reg']" in outcome
