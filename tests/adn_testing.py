"""Helpers shared by the tests."""


def make_adn_cfg(depth=50, backbone="build_resnet_adn_fpn_backbone", norm="BN", **overrides):
    """A Detectron2 config with adadet's keys and an ADN backbone; ``overrides`` are
    dotted keys with ``__`` for dots, e.g. ``MODEL__BACKBONE__FREEZE_AT=2``."""
    from detectron2.config import get_cfg

    from adadet import add_adn_config

    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    if depth in (18, 34):
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split("__")
        for name in path:
            node = getattr(node, name)
        setattr(node, leaf, value)
    return cfg
