"""FPNs on a ResNet-ADN bottom-up: Detectron2's ``FPN``, with the ADN backbone underneath.

The FPN itself does not change with depth; switching the depth of the whole model
(:func:`adadet.set_depth`) reaches the bottom-up ResNet-ADN.
"""
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from .resnet_adn import build_resnet_adn_backbone

__all__ = ["build_resnet_adn_fpn_backbone", "build_retinanet_resnet_adn_fpn_backbone"]


def _fpn(cfg, bottom_up, top_block) -> FPN:
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_resnet_adn_fpn_backbone(cfg, input_shape):
    """ResNet-ADN + FPN with P6 by max-pooling (Mask/Faster R-CNN), like Detectron2's
    ``build_resnet_fpn_backbone``."""
    return _fpn(cfg, build_resnet_adn_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_resnet_adn_fpn_backbone(cfg, input_shape):
    """ResNet-ADN + FPN with P6/P7 from res5 (RetinaNet), like Detectron2's
    ``build_retinanet_resnet_fpn_backbone``."""
    bottom_up = build_resnet_adn_backbone(cfg, input_shape)
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return _fpn(cfg, bottom_up, LastLevelP6P7(in_channels_p6p7, out_channels))
