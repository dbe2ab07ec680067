"""adadet: Adaptive Depth Networks (ADN) for Detectron2.

``import adadet`` registers the ADN backbones in Detectron2's ``BACKBONE_REGISTRY`` and the
LayerNorm ROI heads (``FastRCNNConvFCHeadLN``, ``MaskRCNNConvUpsampleHeadLN``) in its
``ROI_BOX_HEAD_REGISTRY`` / ``ROI_MASK_HEAD_REGISTRY``.
"""
from .config import add_adn_config
from .depth import (
    DEFAULT_EVAL_CHAIN,
    all_depths,
    expand_depth_list,
    get_depth,
    normalize_depth,
    parse_depth,
    set_depth,
    using_depth,
)
from .modeling import (
    FastRCNNConvFCHeadLN,
    MaskRCNNConvUpsampleHeadLN,
    ResNetADN,
    ViTADN,
    build_resnet_adn_backbone,
    build_resnet_adn_fpn_backbone,
    build_retinanet_resnet_adn_fpn_backbone,
    build_retinanet_vit_adn_sfp_backbone,
    build_vit_adn_backbone,
    build_vit_adn_sfp_backbone,
)

__version__ = "0.1.0"
