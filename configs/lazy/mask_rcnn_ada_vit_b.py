"""Mask R-CNN ViT-B-ADN with ViTDet's simple feature pyramid, as a LazyConfig: the model
of ``configs/mask_rcnn_ada_vit_b.yaml`` (tests/engine/test_lazy_configs.py builds both and
compares them), ViTDet's recipe (LayerNorm heads, AdamW, layer-wise LR decay 0.7).

    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_vit_b.py --num-gpus 8

A ViTDet config takes ViT-ADN the same way: ``model.backbone = L(ViTSimpleFeaturePyramid)(
bottom_up=L(ViTADN)(...), ...)``.
"""
import torch
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from adadet.engine.optimizer import clipped_optimizer, vit_adn_param_groups
from adadet.layers import ChannelLayerNorm
from adadet.modeling import FastRCNNConvFCHeadLN, MaskRCNNConvUpsampleHeadLN, ViTADN
from adadet.modeling.backbone import ViTSimpleFeaturePyramid

from .mask_rcnn_ada_r50 import adn, dataloader, lr_multiplier, model, train  # noqa: F401

model.backbone = L(ViTSimpleFeaturePyramid)(
    bottom_up=L(ViTADN)(
        embed_dim=768,
        num_blocks=12,
        num_heads=12,
        patch_size=16,
        mlp_ratio=4.0,
        drop_path_rate=0.1,  # ViTDet's rate for ViT-B
        window_size=14,
        window_block_indexes=[0, 2, 3, 5, 6, 8, 9, 11],
        pretrain_img_size=224,  # torchvision's ViT-B/16: a 14x14 position grid
        depth="FFFF",
    ),
    in_feature="last_feat",
    out_channels=256,
    scale_factors=[4.0, 2.0, 1.0, 0.5],
    top_block=L(LastLevelMaxPool)(),  # p6 from p5
    norm="LN",
)
model.proposal_generator.head.conv_dims = [-1, -1]  # two 3x3 convs, as ViTDet
roi = model.roi_heads
# the heads of configs/mask_rcnn_ada_vit_b.yaml: Detectron2's, with a LayerNorm after each
# conv (ViTDet's NORM "LN", which v0.6's get_norm does not know)
roi.box_head._target_ = FastRCNNConvFCHeadLN
roi.box_head.conv_dims = [256, 256, 256, 256]
roi.box_head.fc_dims = [1024]
roi.box_head.conv_norm = ChannelLayerNorm
roi.mask_head._target_ = MaskRCNNConvUpsampleHeadLN
roi.mask_head.conv_norm = ChannelLayerNorm
del roi  # not a section of the config

adn.distill.features = ["group1", "group2", "group3", "group4"]  # the groups' outputs

# AdamW with ViTDet's layer-wise LR decay; gradients clipped to norm 1.0
optimizer = L(clipped_optimizer)(
    optimizer_class=torch.optim.AdamW,
    params=L(vit_adn_param_groups)(base_lr=1e-4, lr_decay_rate=0.7, weight_decay_norm=0.0),
    lr=1e-4,
    weight_decay=0.1,
    clip_type="norm",
    clip_value=1.0,
)

train.init_checkpoint = "adn_vit_b_imagenet.pkl"  # tools/convert_adn_weights.py (docs/weights.md)
