"""Two CPU processes (gloo) with DistributedDataParallel, find_unused_parameters=False.

Both passes run inside one DDP forward, so DDP accepts the step (it would report unused
parameters at the second step) and the update equals one process on the combined batch.
GroupNorm replaces BN to make that comparison exact (see engine_ddp_worker).
"""
import torch
import torch.multiprocessing as mp
from detectron2.modeling import build_model

import engine_ddp_worker as w
from adadet.engine import SelfDistillationModel, ddp_kwargs


def test_two_process_step_equals_one_process_on_the_combined_batch(tiny_dataset, tmp_path):
    cfg = w.exact_split_cfg()
    torch.manual_seed(0)
    initial = build_model(cfg)
    # what ADNTrainer passes to create_ddp_model for the paper's student "TTTT"
    assert ddp_kwargs(cfg, SelfDistillationModel.from_config(cfg, initial)) == {
        "broadcast_buffers": False,
        "device_ids": None,
        "find_unused_parameters": False,
    }

    out_file = str(tmp_path / "ddp_state.pth")
    mp.spawn(
        w.worker,
        args=(2, str(tmp_path / "dist_init"), tiny_dataset, out_file),
        nprocs=2,
        join=True,
    )
    ddp_state = torch.load(out_file)
    single_state = w.train(cfg, w.batch(cfg, [0, 1]), ddp=False)

    moved = []
    for name, value in single_state.items():
        torch.testing.assert_close(
            ddp_state[name], value, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}"
        )
        moved.append(not torch.equal(value, initial.state_dict()[name]))
    assert sum(moved) > len(moved) // 2  # the comparison is about real updates
