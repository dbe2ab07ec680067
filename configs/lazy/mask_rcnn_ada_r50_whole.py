"""Mask R-CNN R-50-ADN FPN on COCO whose neck and heads adapt too, as a LazyConfig: the
same model as ``configs/mask_rcnn_ada_r50_whole.yaml`` (adadet's architecture, not the
paper's; that file says what adapts). Depth settings have 7 letters: the backbone's 4,
then fpn, rpn_head, mask_head.

    tools/lazyconfig_train_net.py --config-file configs/lazy/mask_rcnn_ada_r50_whole.py --num-gpus 8
"""
from adadet.modeling import SkippableMaskRCNNConvUpsampleHead, SkippableRPNHead
from adadet.modeling.backbone import SkippableFPN

from .mask_rcnn_ada_r50 import adn, dataloader, lr_multiplier, model, optimizer, train

model.backbone._target_ = SkippableFPN
model.proposal_generator.head._target_ = SkippableRPNHead
model.roi_heads.mask_head._target_ = SkippableMaskRCNNConvUpsampleHead

adn.distill.subnets = ["base"]  # the whole base-net "TTTTTTT"
adn.test_depths = ["FFFFFFF", "TFFFFFF", "TTFFFFF", "TTTFFFF", "TTTTFFF", "TTTTTFF", "TTTTTTF",
                   "TTTTTTT"]
