"""Worker of the two-process DDP test (a module of its own so that spawn can import it).

The config makes one step on 2 processes x 1 image exactly equal to one step on
1 process x 2 images:

* GroupNorm instead of BN: per-image statistics, independent of how the batch is split;
* RPN and ROI batch sizes above the number of anchors / proposals, so every candidate is
  sampled (no random subsampling) and each image contributes the same number of terms to
  the normalizers (every tiny image has 2 objects and 20 proposals);
* Faster R-CNN (MASK_ON False): the mask loss is a mean over foreground boxes of the whole
  batch, which a split batch does not reproduce.
"""
import torch
import torch.distributed as dist
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.engine import create_ddp_model
from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from adadet.engine import ADNTrainStep, SelfDistillationModel, ddp_kwargs
from engine_tiny_data import register_tiny, tiny_cfg

NUM_STEPS = 2  # DDP reports parameters without gradient at the step after


def exact_split_cfg():
    cfg = tiny_cfg()
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.RESNETS.NORM = "GN"
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
    model = create_ddp_model(wrapper, **ddp_kwargs(cfg, wrapper)) if ddp else wrapper
    step = ADNTrainStep(model, [data] * NUM_STEPS, build_optimizer(cfg, detector))
    with EventStorage(0) as storage:
        for i in range(NUM_STEPS):
            step.iter = storage.iter = i
            step.run_step()
    return {k: v.detach().clone() for k, v in detector.state_dict().items()}


def worker(rank, world_size, init_file, tiny_root, out_file):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        register_tiny(tiny_root)
        cfg = exact_split_cfg()
        state = train(cfg, batch(cfg, [rank]), ddp=True)
        if rank == 0:
            torch.save(state, out_file)
    finally:
        dist.destroy_process_group()
