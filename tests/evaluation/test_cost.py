"""Per-depth cost: FLOPs fall with every added skip; used parameters exclude what does not run."""
import itertools

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

import adadet
from adadet.evaluation import backbone_cost
from adadet.layers import SwitchableNormConv2d
from adn_testing import make_adn_cfg


def test_backbone_flops_strictly_decrease_with_each_added_skip():
    bottom_up = build_backbone(make_adn_cfg(18, "build_resnet_adn_backbone"), ShapeSpec(channels=3))
    costs = {}
    for setting in adadet.all_depths():
        adadet.set_depth(bottom_up, setting)
        costs[setting] = backbone_cost(bottom_up, (64, 64))
    assert adadet.get_depth(bottom_up) == "TTTT"
    for setting, more in itertools.product(costs, repeat=2):
        adds_one_skip = sum(a != b for a, b in zip(setting, more)) == 1 and more.count("T") > setting.count("T")
        if adds_one_skip:
            assert costs[more]["flops"] < costs[setting]["flops"], (setting, more)
            assert costs[more]["params"] < costs[setting]["params"], (setting, more)


def test_used_parameters_count_one_norm_set_and_no_skipped_block():
    bottom_up = build_backbone(make_adn_cfg(50, "build_resnet_adn_backbone"), ShapeSpec(channels=3))
    total = sum(p.numel() for p in bottom_up.parameters())
    skip_norms = sum(
        p.numel() for m in bottom_up.modules() if isinstance(m, SwitchableNormConv2d)
        for p in m.norm_skip.parameters()
    )
    assert backbone_cost(bottom_up, (64, 64))["params"] == total - skip_norms
    bottom_up.set_depth("TTTT")
    skipped = sum(p.numel() for stage in bottom_up.stages for b in stage.skippable_blocks for p in b.parameters())
    assert backbone_cost(bottom_up, (64, 64))["params"] == total - skipped - skip_norms
    # R-50 super-net trunk: the 23.5M parameters of torchvision's resnet50 without its fc
    assert abs((total - skip_norms) / 1e6 - 23.51) < 0.01
