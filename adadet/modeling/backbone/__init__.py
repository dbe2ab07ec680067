"""ADN backbones; importing this package registers their builders in BACKBONE_REGISTRY."""
from .fpn_adn import build_resnet_adn_fpn_backbone, build_retinanet_resnet_adn_fpn_backbone
from .resnet_adn import AdaptiveStage, ResNetADN, build_resnet_adn_backbone, num_mandatory_blocks
from .skippable_fpn import (
    SkippableFPN,
    build_resnet_adn_skippable_fpn_backbone,
    build_retinanet_resnet_adn_skippable_fpn_backbone,
)
from .vit_adn import ViTADN, build_vit_adn_backbone
from .vit_pyramid import (
    ViTSimpleFeaturePyramid,
    build_retinanet_vit_adn_sfp_backbone,
    build_vit_adn_sfp_backbone,
)
