"""The embedded CPU demo (configs/mask_rcnn_ada_r18_embedded_cpu.yaml) as a LazyConfig:
R-18-ADN Mask R-CNN from scratch on the generated shapes, 400 iterations on CPU, with
adadet's sandwich recipe (the students its study chose for these from-scratch CPU tasks).

    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r18_embedded_cpu.py
"""
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.solver.build import get_default_optimizer_params
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from adadet.data import CheckedDatasetMapper  # also registers the adadet_shapes_* datasets
from adadet.depth import mixed_depths
from adadet.engine.optimizer import clipped_optimizer
from adadet.env import has_compiled_ops
from adadet.modeling import ResNetADN

from .mask_rcnn_ada_r50 import adn, model, train

NORM = "BN"  # trainable BN in one process
MAX_ITER = 400

model.backbone.bottom_up = L(ResNetADN)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm=NORM),
    # [2, 2, 2, 2] blocks: 1 mandatory + 1 skippable per stage
    stages=L(ResNet.make_default_stages)(depth=18, norm=NORM),
    norm=NORM,
    out_features=["res2", "res3", "res4", "res5"],
    freeze_at=0,  # from scratch: every stage trains
    depth="FFFF",
)
model.backbone.out_channels = 64
rpn = model.proposal_generator
rpn.head.in_channels = 64
rpn.anchor_generator.sizes = [[16], [32], [64], [128], [256]]  # objects are ~20-80 px
rpn.batch_size_per_image = 128  # at most 4 objects per image
rpn.pre_nms_topk = (1000, 500)
rpn.post_nms_topk = (150, 300)
roi = model.roi_heads
roi.num_classes = 3  # circle, rectangle, triangle
roi.batch_size_per_image = 64
roi.box_head.input_shape = ShapeSpec(channels=64, height=7, width=7)
roi.box_head.fc_dims = [256, 256]
roi.box_predictor.input_shape = ShapeSpec(channels=256)
roi.mask_head.input_shape = ShapeSpec(channels=64, width=14, height=14)
roi.mask_head.conv_dims = [64, 64, 64]  # 2 convs of 64, then the deconv's 64
del rpn, roi  # not sections of the config

# adadet's sandwich recipe: the base-net every iteration plus one of the 14 mixed settings
adn.distill.always_students = ["TTTT"]
adn.distill.subnets = mixed_depths(4)

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="adadet_shapes_train"),
        mapper=L(CheckedDatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.ResizeShortestEdge)(
                    short_edge_length=(144, 160, 176), max_size=240, sample_style="choice"
                ),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="RGB",
            use_instance_mask=True,
        ),
        total_batch_size=2,
        num_workers=0,  # small images; worker processes would compete for the cores
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="adadet_shapes_val", filter_empty=False),
        mapper=L(CheckedDatasetMapper)(
            is_train=False,
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=160, max_size=240)],
            image_format="RGB",
        ),
        num_workers=0,
    ),
    evaluator=L(COCOEvaluator)(
        dataset_name="${..test.dataset.names}",
        use_fast_impl=has_compiled_ops(),  # Detectron2's C++ COCOeval, else pycocotools
    ),
)

# Detectron2's common SGD, with SOLVER.CLIP_GRADIENTS' clipping (training from scratch)
optimizer = L(clipped_optimizer)(
    optimizer_class=torch.optim.SGD,
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    clip_type="norm",
    clip_value=5.0,
)
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1], milestones=[320, MAX_ITER]),
    warmup_length=100 / MAX_ITER,
    warmup_factor=0.001,
)

train.init_checkpoint = ""  # random init: nothing to download
train.max_iter = MAX_ITER
train.device = "cpu"
train.eval_period = 0  # evaluated once, after the last iteration
train.checkpointer.period = 200
train.output_dir = "output/lazy/mask_rcnn_ada_r18_embedded_cpu"
