"""Helpers shared by the tests."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """A script of tools/ as a module, so that its main(argv) runs in-process."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def set_cfg_keys(cfg, **overrides):
    """Set dotted config keys written with ``__`` for dots (``MODEL__ADN__DEPTH="TTTT"``)."""
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split("__")
        for name in path:
            node = getattr(node, name)
        setattr(node, leaf, value)
    return cfg


#: Overrides that make a ViT-ADN Mask R-CNN config tiny: 8 blocks of width 32, in 4 groups
#: whose outputs the student learns from.
TINY_VIT_ADN_KEYS = dict(
    MODEL__BACKBONE__NAME="build_vit_adn_sfp_backbone",
    MODEL__VIT_ADN__EMBED_DIM=32,
    MODEL__VIT_ADN__NUM_BLOCKS=8,
    MODEL__VIT_ADN__NUM_HEADS=2,
    MODEL__VIT_ADN__PRETRAIN_IMG_SIZE=64,
    MODEL__VIT_ADN__OUT_CHANNELS=32,
    MODEL__ADN__DISTILL__FEATURES=["group1", "group2", "group3", "group4"],
)


def make_adn_cfg(depth=50, backbone="build_resnet_adn_fpn_backbone", norm="BN", **overrides):
    """A Detectron2 config with adadet's keys and an ADN backbone; ``overrides`` as for
    :func:`set_cfg_keys`."""
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
    return set_cfg_keys(cfg, **overrides)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def make_project_cfg(config_name, **overrides):
    """One of the project's YAML configs, on CPU with random init; ``overrides`` as above."""
    from detectron2.config import get_cfg

    from adadet import add_adn_config

    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.merge_from_file(str(CONFIGS / config_name))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return set_cfg_keys(cfg, **overrides)


def synthetic_batch(num_images=2, height=128, width=160, num_classes=3, seed=0):
    """Detectron2 training inputs: images with 1-2 boxes (and polygon masks) each."""
    import torch
    from detectron2.structures import Boxes, Instances, PolygonMasks

    generator = torch.Generator().manual_seed(seed)
    batch = []
    for index in range(num_images):
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        boxes, polygons = [], []
        for k in range(1 + index % 2):
            x0, y0 = 10 + 40 * k, 12 + 30 * k
            x1, y1 = x0 + 50, y0 + 60
            boxes.append([x0, y0, x1, y1])
            polygons.append([[x0, y0, x1, y0, x1, y1, x0, y1]])
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.gt_classes = torch.tensor([k % num_classes for k in range(len(boxes))])
        instances.gt_masks = PolygonMasks(polygons)
        batch.append({"image": image, "instances": instances, "height": height, "width": width})
    return batch


def detectron2_zoo_config(relative_path: str) -> str:
    """A config file of Detectron2's model zoo (:func:`adadet.config.detectron2_config_file`)."""
    from adadet.config import detectron2_config_file

    return detectron2_config_file(relative_path)
