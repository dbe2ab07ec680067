"""Worker of the two-process DDP tests (a module of its own so that spawn can import it).

The config makes N steps on 2 processes x 1 image equal to N steps on 1 process x 2
images:

* norms whose result does not depend on how the batch is split: GroupNorm, FrozenBN, or
  synchronized BN (Detectron2's NaiveSyncBatchNorm, "naiveSyncBN": torch's SyncBatchNorm,
  Detectron2's "SyncBN", needs a GPU) against plain BN on the whole batch in one process;
* RPN and ROI batch sizes above the number of anchors / proposals, so every candidate is
  sampled (no random subsampling) and each image contributes the same number of terms to
  the normalizers (every tiny image has 2 objects and 20 proposals);
* Faster R-CNN (MASK_ON False): the mask loss is a mean over foreground boxes of the whole
  batch, which a split batch does not reproduce.
"""
import contextlib
import datetime
import gc
import os

import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.engine import create_ddp_model
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from adadet import get_depth
from adadet.engine import ADNTrainStep, SelfDistillationModel, ddp_kwargs
from engine_tiny_data import register_tiny, tiny_cfg

NUM_STEPS = 3  # DDP reports parameters without gradient at the step after


def exact_split_cfg(norm="GN", subnets=("TTTT",), distributed=True, freeze_at=2):
    """The config of the comparison; ``distributed=False``: of the one-process reference
    (plain BN where the processes synchronize theirs). ``freeze_at=0``: a trainable stem,
    whose output both passes share."""
    cfg = tiny_cfg()
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.RESNETS.NORM = norm if distributed or norm != "naiveSyncBN" else "BN"
    cfg.MODEL.ADN.DISTILL.SUBNETS = list(subnets)
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 4096
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 20
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    return cfg


def batch(cfg, indices):
    mapper = DatasetMapper(is_train=True, augmentations=[], image_format=cfg.INPUT.FORMAT)
    dicts = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])
    return [mapper(dicts[i]) for i in indices]


def train(cfg, data, ddp: bool):
    """NUM_STEPS steps of ADNTrainStep on ``data``; returns the detector's state dict."""
    torch.manual_seed(0)
    detector = build_model(cfg)
    wrapper = SelfDistillationModel.from_config(cfg, detector)
    model = create_ddp_model(wrapper, **ddp_kwargs(wrapper, cfg.MODEL.DEVICE)) if ddp else wrapper
    step = ADNTrainStep(model, [data] * NUM_STEPS, build_optimizer(cfg, detector))
    with EventStorage(0) as storage:
        for i in range(NUM_STEPS):
            step.iter = storage.iter = i
            step.run_step()
    return {k: v.detach().clone() for k, v in detector.state_dict().items()}


@contextlib.contextmanager
def process_group(rank, world_size, init_file):
    torch.set_num_threads(1)
    # a short timeout turns a rank left waiting in a collective into an error, not a hang
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        yield
    finally:
        gc.collect()  # DDP models (reference cycles) go before the group they use
        dist.destroy_process_group()


def worker(rank, world_size, init_file, tiny_root, out_file, norm, subnets, freeze_at=2):
    with process_group(rank, world_size, init_file):
        register_tiny(tiny_root)
        cfg = exact_split_cfg(norm, subnets, freeze_at=freeze_at)
        state = train(cfg, batch(cfg, [rank]), ddp=True)
        if rank == 0:
            torch.save(state, out_file)


def non_finite_worker(rank, world_size, init_file, tiny_root, out_dir):
    """Rank 1's sub-net box loss turns NaN at iteration 1; each rank writes what stopped it
    to ``out_dir/rank<N>.txt``."""
    with process_group(rank, world_size, init_file):
        register_tiny(tiny_root)
        cfg = exact_split_cfg()
        detector = build_model(cfg)
        wrapper = SelfDistillationModel.from_config(cfg, detector)
        model = create_ddp_model(wrapper, **ddp_kwargs(wrapper, cfg.MODEL.DEVICE))
        step = ADNTrainStep(model, [batch(cfg, [rank])] * 2, build_optimizer(cfg, detector))

        def poison(module, inputs, output):
            if rank == 1 and step.iter == 1 and get_depth(detector) == "TTTT":
                output[1]["loss_box_reg"] = output[1]["loss_box_reg"] * float("inf")

        detector.roi_heads.register_forward_hook(poison)
        outcome = "finished"
        try:
            with EventStorage(0) as storage:
                for i in range(2):
                    step.iter = storage.iter = i
                    step.run_step()
        except Exception as e:
            outcome = f"{type(e).__name__}: {e}"
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write(outcome)
        # DDP's reducer must go before its process group (else, at times, an abort at exit)
        del step, model, wrapper, poison
        dist.barrier()
