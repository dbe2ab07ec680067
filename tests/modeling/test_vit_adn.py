"""ViT-ADN: block groups, depth settings, switchable LayerNorms, drop-path, position
embeddings, windowed attention, the simple feature pyramid, costs, Mask R-CNN and RetinaNet
on it. (Its weights: tests/checkpoint/test_vit_weights.py; its LayerNorm ROI heads:
tests/modeling/test_roi_heads.py; its layer-wise LR decay: tests/engine/test_engine_optimizer.py.)

The tests use a tiny ViT (embed 64, 12 blocks, 4 heads, 64 px pretraining grid of 4x4
patches) on 64x96 images.
"""
import copy
from pathlib import Path

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import adadet
from adadet.depth import all_depths, parse_depth
from adadet.engine import build_adn_optimizer
from adadet.evaluation import backbone_cost
from adadet.layers import SwitchableLayerNorm
from adadet.modeling.backbone.vit_adn import (
    VIT_SIZES,
    ViTADN,
    ViTBlock,
    _merge_windows,
    _split_into_windows,
    interpolate_pos_embed,
    mandatory_block_indexes,
)

from adn_testing import make_adn_cfg, set_cfg_keys, synthetic_batch

ROOT = Path(__file__).resolve().parents[2]
INPUT = ShapeSpec(channels=3)
TINY = dict(embed_dim=64, num_blocks=12, num_heads=4, pretrain_img_size=64)
TINY_MANDATORY = [0, 1, 3, 4, 6, 7, 9, 10]



@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second thread costs more in synchronisation than it gains
    (on a loaded 2-core machine, 10-50x more: threads spin-wait for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def tiny_cfg(backbone="build_vit_adn_sfp_backbone", config_file=None, **overrides):
    """A tiny ViT-ADN config; ``config_file`` (a project YAML) is merged first."""
    cfg = make_adn_cfg(backbone=backbone)
    if config_file:
        cfg.merge_from_file(str(ROOT / "configs" / config_file))
        cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.NAME = backbone
    return set_cfg_keys(
        cfg,
        MODEL__VIT_ADN__EMBED_DIM=64,
        MODEL__VIT_ADN__NUM_BLOCKS=12,
        MODEL__VIT_ADN__NUM_HEADS=4,
        MODEL__VIT_ADN__PRETRAIN_IMG_SIZE=64,
        MODEL__VIT_ADN__OUT_CHANNELS=32,
        MODEL__VIT_ADN__WINDOW_SIZE=3,  # does not divide the 4x6 grid: padding is exercised
        MODEL__VIT_ADN__WINDOW_BLOCK_INDEXES=[0, 2, 3, 5, 6, 8, 9, 11],
        **overrides,
    )



def _count_calls(modules):
    counts = {module: 0 for module in modules}

    def hook(module, inputs, output):
        counts[module] += 1

    return counts, [module.register_forward_hook(hook) for module in modules]



# -- structure -------------------------------------------------------------------------------


def test_groups_of_standard_sizes():
    assert mandatory_block_indexes(12) == TINY_MANDATORY  # ViT-S/B: 4 x (2 + 1)
    large = mandatory_block_indexes(VIT_SIZES["L"]["num_blocks"])  # ViT-L: 4 x (5 + 1)
    assert sorted(set(range(24)) - set(large)) == [5, 11, 17, 23]
    vit = ViTADN(embed_dim=32, num_blocks=24, num_heads=2, pretrain_img_size=32)
    assert vit.skippable_block_indexes == [5, 11, 17, 23]
    for index, block in enumerate(vit.blocks):
        switchable = isinstance(block.norm1, SwitchableLayerNorm)
        assert switchable == isinstance(block.norm2, SwitchableLayerNorm) == (index in large)
    assert type(vit.final_norm) is torch.nn.LayerNorm
    assert mandatory_block_indexes(12, [1, 2, 1, 2]) == [0, 3, 4, 6, 9, 10]
    with pytest.raises(ValueError, match="multiple of 4"):
        mandatory_block_indexes(10)
    with pytest.raises(ValueError, match="one number per group"):
        mandatory_block_indexes(12, [2, 2])
    with pytest.raises(ValueError, match=r"between 1 and 2 .*out of range: group 3 \(4\)"):
        mandatory_block_indexes(12, [2, 2, 2, 4])



def test_a_group_without_skippable_blocks_is_refused():
    # Every block mandatory: 'T' would skip nothing and FFFF would be TTTT.
    with pytest.raises(ValueError, match=r"between 1 and 2 .*group 0 \(3\), group 3 \(3\).*Fix"):
        mandatory_block_indexes(12, [3, 2, 2, 3])
    with pytest.raises(ValueError, match="nothing to skip.*NUM_BLOCKS to a multiple of 4 of at least 8"):
        ViTADN(embed_dim=32, num_blocks=4, num_heads=2, pretrain_img_size=32)



def test_config_builds_the_yaml_network_and_refuses_bad_settings():
    cfg = make_adn_cfg(backbone="build_vit_adn_backbone")
    cfg.merge_from_file(str(ROOT / "configs" / "mask_rcnn_ada_vit_b.yaml"))
    assert cfg.MODEL.BACKBONE.NAME == "build_vit_adn_sfp_backbone"
    cfg.MODEL.BACKBONE.NAME = "build_vit_adn_backbone"
    cfg.MODEL.VIT_ADN.NUM_BLOCKS = 8  # ViT-B widths, fewer blocks: cheap to build
    cfg.MODEL.VIT_ADN.WINDOW_BLOCK_INDEXES = [0, 2]
    cfg.MODEL.ADN.DEPTH = "TFTF"
    vit = build_backbone(cfg, INPUT)
    assert vit.depth == "TFTF" and vit.embed_dim == 768 and vit.patch_size == 16
    assert vit.output_shape() == {"last_feat": ShapeSpec(channels=768, stride=16)}
    assert [block.window_size for block in vit.blocks] == [14, 0, 14] + [0] * 5
    assert vit.blocks[0].attn.num_heads == 12
    cfg.MODEL.VIT_ADN.WINDOW_BLOCK_INDEXES = [8]
    with pytest.raises(ValueError, match="WINDOW_BLOCK_INDEXES"):
        build_backbone(cfg, INPUT)
    cfg.MODEL.VIT_ADN.WINDOW_BLOCK_INDEXES = []
    cfg.MODEL.ADN.DEPTH = "TTF"
    with pytest.raises(ValueError, match="Invalid depth setting 'TTF'"):
        build_backbone(cfg, INPUT)



# -- shapes and depth ------------------------------------------------------------------------


def test_pyramid_shapes_at_every_depth():
    torch.manual_seed(0)
    backbone = build_backbone(tiny_cfg(), INPUT).eval()
    shapes = backbone.output_shape()
    assert {k: (v.stride, v.channels) for k, v in shapes.items()} == {
        "p2": (4, 32), "p3": (8, 32), "p4": (16, 32), "p5": (32, 32), "p6": (64, 32)
    }
    assert backbone.size_divisibility == 32
    x = torch.randn(1, 3, 64, 96)
    sums = set()
    with torch.no_grad():
        for setting in all_depths():
            adadet.set_depth(backbone, setting)
            assert backbone.bottom_up.depth == setting
            features = backbone(x)
            for name, feature in features.items():
                stride = shapes[name].stride
                assert feature.shape == (1, 32, -(-64 // stride), -(-96 // stride)), (setting, name)
            sums.add(round(float(features["p2"].abs().sum()), 3))
    assert len(sums) == 16  # each setting is a different sub-network



def test_bare_vit_and_retinanet_pyramid():
    torch.manual_seed(0)
    vit = build_backbone(tiny_cfg("build_vit_adn_backbone"), INPUT)
    assert vit.size_divisibility == 16
    out = vit(torch.randn(2, 3, 64, 96))
    assert list(out) == ["last_feat"] and out["last_feat"].shape == (2, 64, 4, 6)
    cfg = tiny_cfg(
        "build_retinanet_vit_adn_sfp_backbone", MODEL__VIT_ADN__SCALE_FACTORS=[2.0, 1.0, 0.5]
    )
    retina = build_backbone(cfg, INPUT)
    assert {k: v.stride for k, v in retina.output_shape().items()} == {
        "p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128
    }
    features = retina(torch.randn(1, 3, 64, 96))
    sizes = [tuple(f.shape[-2:]) for f in features.values()]
    assert sizes == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]



def test_skipped_blocks_do_not_run_and_get_no_gradient():
    torch.manual_seed(0)
    vit = ViTADN(**TINY, drop_path_rate=0.1, window_size=3, window_block_indexes=[0, 4])
    counts, handles = _count_calls(list(vit.blocks))
    vit.set_depth("TFTF")
    vit(torch.randn(2, 3, 64, 96))["last_feat"].sum().backward()
    for handle in handles:
        handle.remove()
    flags = parse_depth("TFTF")
    for index, block in enumerate(vit.blocks):
        skips = flags[vit.group_of(index)]
        runs = index in TINY_MANDATORY or not skips
        assert counts[block] == int(runs) and vit.block_runs(index) == runs
        if not runs:
            assert all(p.grad is None for p in block.parameters())
            continue
        assert block.attn.qkv.weight.grad.abs().sum() > 0
        assert block.mlp.fc2.weight.grad.abs().sum() > 0
        if isinstance(block.norm1, SwitchableLayerNorm):  # only the norm set in use learns
            for pair in (block.norm1, block.norm2):
                used, unused = (pair.norm_skip, pair.norm) if skips else (pair.norm, pair.norm_skip)
                assert used.weight.grad is not None and unused.weight.grad is None



def test_skip_layernorms_used_exactly_in_mandatory_blocks_of_skipping_groups():
    vit = ViTADN(**TINY)
    pairs = [m for m in vit.modules() if isinstance(m, SwitchableLayerNorm)]
    assert len(pairs) == 2 * len(TINY_MANDATORY)
    main_counts, h1 = _count_calls([p.norm for p in pairs])
    skip_counts, h2 = _count_calls([p.norm_skip for p in pairs])
    vit.set_depth("FTFT")
    with torch.no_grad():
        vit(torch.randn(1, 3, 64, 64))
    flags = parse_depth("FTFT")
    for index in TINY_MANDATORY:
        skips = flags[vit.group_of(index)]
        for pair in (vit.blocks[index].norm1, vit.blocks[index].norm2):
            assert skip_counts[pair.norm_skip] == int(skips)
            assert main_counts[pair.norm] == int(not skips)
    for handle in h1 + h2:
        handle.remove()



def test_drop_path_drops_whole_samples_in_training_only():
    block = ViTBlock(16, 2, drop_path=0.5)
    assert set(block.state_dict()) == set(ViTBlock(16, 2).state_dict())  # no keys of its own
    branch = torch.ones(64, 2, 3, 16)
    torch.manual_seed(0)
    dropped = block.drop_path.train()(branch)
    per_sample = dropped.flatten(1)
    # each sample kept whole (scaled by 1 / (1 - 0.5)) or dropped whole; both happen
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert bool((per_sample == per_sample[:, :1]).all())
    assert block.drop_path.eval()(branch) is branch



def test_depth_switch_copies_no_weights_and_deepcopy_keeps_its_own_switches():
    backbone = build_backbone(tiny_cfg(), INPUT)
    before = {name: p.data_ptr() for name, p in backbone.state_dict().items()}
    for setting in ("TTTT", "TFTF", "FFFF"):
        adadet.set_depth(backbone, setting)
    assert before == {name: p.data_ptr() for name, p in backbone.state_dict().items()}
    clone = copy.deepcopy(backbone)
    adadet.set_depth(clone, "TTTT")
    assert adadet.get_depth(backbone) == "FFFF"
    def switches(model):
        return [p.switch.active for p in model.modules() if isinstance(p, SwitchableLayerNorm)]

    assert all(switches(clone)) and not any(switches(backbone))



def test_flops_and_used_parameters_fall_with_depth():
    torch.manual_seed(0)
    vit = ViTADN(**TINY)
    costs = []
    for setting in adadet.DEFAULT_EVAL_CHAIN:  # FFFF, TFFF, TTFF, TTTF, TTTT
        vit.set_depth(setting)
        costs.append(backbone_cost(vit, (64, 96)))
    flops = [c["flops"] for c in costs]
    params = [c["params"] for c in costs]
    assert flops == sorted(flops, reverse=True) and len(set(flops)) == 5
    assert params == sorted(params, reverse=True) and len(set(params)) == 5
    # the base-net runs 8 of 12 blocks; embedding and final norm are shared
    assert 0.6 < flops[-1] / flops[0] < 0.75



# -- position embeddings and windows ---------------------------------------------------------


def test_position_embedding_interpolation():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 16, 8)
    same = interpolate_pos_embed(pos, (4, 4))
    assert torch.equal(same, pos[:, 1:].reshape(1, 4, 4, 8))  # the pretraining grid: unchanged
    # Embeddings that vary along the columns only keep doing so on a non-square grid:
    # rows and columns are not swapped.
    columns = torch.arange(4.0).repeat(4)  # row-major 4x4 grid: value = column index
    pos = torch.cat([torch.zeros(1), columns]).reshape(1, 17, 1).repeat(1, 1, 3)
    resized = interpolate_pos_embed(pos, (5, 7))
    assert resized.shape == (1, 5, 7, 3)
    assert torch.allclose(resized, resized[:, :1].expand_as(resized), atol=1e-5)
    assert bool((resized[0, 0, 1:, 0] > resized[0, 0, :-1, 0]).all())
    vit = ViTADN(**TINY)
    for height, width in ((64, 96), (96, 48), (64, 64), (32, 160)):
        out = vit(torch.randn(1, 3, height, width))["last_feat"]
        assert out.shape == (1, 64, height // 16, width // 16)



def test_windows_split_and_merge_back_and_attention_stays_inside_windows():
    x = torch.randn(2, 5, 7, 4)
    windows, padded = _split_into_windows(x, 3)
    assert windows.shape == (2 * 2 * 3, 3, 3, 4) and padded == (6, 9)
    assert torch.equal(_merge_windows(windows, 3, padded, (5, 7)), x)
    torch.manual_seed(0)
    block = ViTBlock(16, 2, window_size=2).eval()
    tokens = torch.randn(1, 4, 6, 16)
    changed = tokens.clone()
    # One channel of one token of the top-left 2x2 window, by a lot: a shift of every
    # channel alike would be removed by the LayerNorm and leave only float noise behind.
    changed[0, 0, 0, 0] += 10.0
    with torch.no_grad():
        delta = (block(changed) - block(tokens)).abs().amax(-1)[0]
    assert delta[:2, :2].min() > 1e-3  # every token of that window sees it
    delta[:2, :2] = 0
    assert delta.max() < 1e-6  # no token of another window does



# -- Mask R-CNN ------------------------------------------------------------------------------


def _mask_rcnn_cfg():
    return tiny_cfg(
        config_file="mask_rcnn_ada_vit_b.yaml",
        MODEL__ROI_HEADS__NUM_CLASSES=3,
        MODEL__ROI_HEADS__BATCH_SIZE_PER_IMAGE=16,
        MODEL__RPN__BATCH_SIZE_PER_IMAGE=32,
        MODEL__RPN__POST_NMS_TOPK_TRAIN=64,
        MODEL__RPN__POST_NMS_TOPK_TEST=32,
        MODEL__ROI_BOX_HEAD__CONV_DIM=32,
        MODEL__ROI_BOX_HEAD__FC_DIM=64,
        MODEL__ROI_MASK_HEAD__CONV_DIM=32,
        MODEL__VIT_ADN__DROP_PATH_RATE=0.1,
        TEST__DETECTIONS_PER_IMAGE=5,  # random heads: keep the mask head's work small
    )



def _batch(height=64, width=80):
    generator = torch.Generator().manual_seed(0)
    batch = []
    for index in range(2):
        boxes = torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 10.0, 70.0, 40.0]])[: 1 + index]
        masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
            masks[k, y0:y1, x0:x1] = True
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([1, 2][: len(boxes)])
        instances.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        batch.append({"image": image, "instances": instances, "height": height, "width": width})
    return batch



def test_mask_rcnn_trains_and_infers_at_every_depth():
    torch.manual_seed(0)
    model = build_model(_mask_rcnn_cfg())
    vit = model.backbone.bottom_up
    assert isinstance(vit, ViTADN) and model.backbone.size_divisibility == 32

    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = _batch()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    before = vit.blocks[0].attn.qkv.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, vit.blocks[0].attn.qkv.weight)

    outputs = _infer_at_every_depth(model, batch[0]["image"], 64, 80)
    for setting, output in outputs.items():
        assert output["instances"].image_size == (64, 80)
        assert output["instances"].has("pred_masks")



def _infer_at_every_depth(model, image, height, width):
    """Inference at each of the 16 depth settings: {setting: output}. Checks that the
    backbone's features differ at every setting (16 sub-networks, one set of weights)."""
    model.eval()
    signatures = set()
    record = model.backbone.register_forward_hook(
        lambda module, inputs, features: signatures.add(
            round(float(sum(f.abs().mean() for f in features.values())), 5)
        )
    )
    outputs = {}
    with torch.no_grad():
        for setting in all_depths():
            adadet.set_depth(model, setting)
            assert model.backbone.bottom_up.depth == setting
            (outputs[setting],) = model([{"image": image, "height": height, "width": width}])
    record.remove()
    assert len(signatures) == 16
    return outputs



# -- RetinaNet -------------------------------------------------------------------------------


def test_retinanet_trains_a_step_and_infers_at_every_depth():
    torch.manual_seed(0)
    cfg = tiny_cfg(
        "build_retinanet_vit_adn_sfp_backbone",
        config_file="retinanet_ada_vit_b.yaml",  # SCALE_FACTORS [2.0, 1.0, 0.5]
        MODEL__RETINANET__NUM_CLASSES=3,
        TEST__DETECTIONS_PER_IMAGE=10,
    )
    model = build_model(cfg)
    assert type(model).__name__ == "RetinaNet"
    assert list(model.backbone.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]
    assert cfg.MODEL.ADN.DISTILL.FEATURES == ["p3", "p4", "p5", "p6", "p7"]
    optimizer = build_adn_optimizer(cfg, model)  # AdamW, layer-wise decay 0.7
    batch = synthetic_batch(num_images=2, height=128, width=160)
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    vit = model.backbone.bottom_up
    watched = [vit.blocks[0].attn.qkv.weight, model.head.cls_score.weight]
    before = [p.detach().clone() for p in watched]
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, watched))

    outputs = _infer_at_every_depth(model, batch[0]["image"], 128, 160)
    for setting, output in outputs.items():
        assert output["instances"].image_size == (128, 160)
        assert len(output["instances"]) <= 10
