"""Mask R-CNN R-50-ADN FPN on COCO (the paper's setting) as a LazyConfig.

Detectron2's own ``common/models/mask_rcnn_fpn.py`` with ResNet-ADN as the bottom-up, the
same model as ``configs/mask_rcnn_ada_r50.yaml`` (tests/engine/test_lazy_configs.py builds
both and compares them):

    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r50.py --num-gpus 8
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BasicStem, ResNet

from adadet.config import load_detectron2_lazy_config
from adadet.data import CheckedDatasetMapper
from adadet.modeling import ResNetADN

from .common.adn import adn
from .common.train import train

NORM = "SyncBN"  # batch statistics over all GPUs (the YACS config's MODEL.RESNETS.NORM)

model = load_detectron2_lazy_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(ResNetADN)(
    stem=L(BasicStem)(in_channels=3, out_channels=64, norm=NORM),
    stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=False, norm=NORM),
    norm=NORM,  # the skip norms' type
    out_features=["res2", "res3", "res4", "res5"],
    freeze_at=2,
    depth="FFFF",
)
# ImageNet ADN weights are torchvision's layout: RGB, normalised by ImageNet's mean and std
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]

dataloader = load_detectron2_lazy_config("common/data/coco.py").dataloader
# Detectron2's mapper, naming an unreadable image and the fix
dataloader.train.mapper._target_ = CheckedDatasetMapper
dataloader.test.mapper._target_ = CheckedDatasetMapper
dataloader.train.mapper.image_format = "RGB"

optimizer = load_detectron2_lazy_config("common/optim.py").SGD
lr_multiplier = load_detectron2_lazy_config("common/coco_schedule.py").lr_multiplier_1x

train.init_checkpoint = "adn_r50_imagenet.pkl"  # tools/convert_adn_weights.py (docs/weights.md)
train.max_iter = 90000
