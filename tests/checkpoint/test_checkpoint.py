"""Weight loading for ResNet-ADN: official ADN, torchvision, MSRA/Caffe2, Detectron2 and
adadet checkpoints, the skip-norm policy, bad input, and the converter CLI.

No weights can be downloaded, so the checkpoints are synthetic in the real key layouts:
torchvision's ResNets with random values, plus ``bn{k}_skip`` norms (random, distinct from
the main norms) in the mandatory blocks as in the official ADN checkpoints.
"""

import argparse
import datetime
import functools
import logging
import pickle
import re

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model

import adadet
from adadet.checkpoint import (
    ADNCheckpointer,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointReadError,
    SkipNormsMissingError,
    TORCHVISION_WEIGHTS_CONFIG,
    WeightsConfigError,
    torchvision_config_mismatches,
)

from adn_testing import ROOT, detectron2_zoo_config, load_tool, make_adn_cfg

R50_MANDATORY = [2, 2, 3, 2]
R18_MANDATORY = [1, 1, 1, 1]
NORM_ENTRIES = ("weight", "bias", "running_mean", "running_var")


# -- synthetic checkpoints -------------------------------------------------------------------


def randomized(state_dict, seed):
    """Random values in the given layout (running_var > 0, as a real BN's)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(int(torch.randint(1, 1000, (1,), generator=gen)))
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = torch.randn(value.shape, generator=gen)
    return out


def torchvision_resnet_state(arch, seed):
    model = getattr(torchvision.models, arch)(weights=None)
    return randomized(model.state_dict(), seed)


def with_skip_norms(state, mandatory, seed):
    """The official ADN layout: ``layer{s}.{i}.bn{k}_skip.*`` in mandatory blocks."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    for stage, count in enumerate(mandatory, start=1):
        for block in range(count):
            for k in (1, 2, 3):
                main = f"layer{stage}.{block}.bn{k}"
                if f"{main}.weight" not in state:
                    continue  # BasicBlock: bn1, bn2 only
                for entry in NORM_ENTRIES:
                    shape = state[f"{main}.{entry}"].shape
                    value = torch.randn(shape, generator=gen)
                    out[f"{main}_skip.{entry}"] = (
                        value.abs() + 0.5 if entry == "running_var" else value
                    )
                out[f"{main}_skip.num_batches_tracked"] = torch.tensor(7)
    return out


def d2_name(key):
    """Detectron2's name of a torchvision/ADN key, written independently of adadet's mapping."""
    if not key.startswith("layer"):
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}.", f"res{t + 1}.")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}_skip.", f"conv{t}.norm_skip.").replace(
            f"bn{t}.", f"conv{t}.norm."
        )
    return key.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")


def assert_backbone_equals(backbone_state, source, *, skip_norms_from_main=False):
    """Every tensor of the backbone equals the source tensor it must come from."""
    expected = {d2_name(k): v for k, v in source.items() if not k.startswith("fc.")}
    checked = 0
    for key, value in backbone_state.items():
        wanted = key.replace(".norm_skip.", ".norm.") if skip_norms_from_main else key
        if wanted not in expected:
            assert key.endswith("num_batches_tracked"), f"{key} has no source tensor"
            continue
        assert torch.equal(value, expected[wanted].to(value.dtype)), key
        checked += 1
    return checked


@pytest.fixture(scope="module")
def r50_state():
    return torchvision_resnet_state("resnet50", seed=1)


@pytest.fixture(scope="module")
def r50_adn_state(r50_state):
    return with_skip_norms(r50_state, R50_MANDATORY, seed=2)


@pytest.fixture(scope="module")
def r18_adn_state():
    return with_skip_norms(torchvision_resnet_state("resnet18", seed=3), R18_MANDATORY, seed=4)


@pytest.fixture(scope="module")
def files(tmp_path_factory, r50_state, r50_adn_state):
    """The R-50 checkpoints as files, in the ways they are saved in the wild."""
    root = tmp_path_factory.mktemp("weights")
    paths = {
        "adn_flat.pth": r50_adn_state,
        "adn_model.pt": {"model": r50_adn_state, "epoch": 300},
        "adn_module_state_dict.pth": {
            "state_dict": {"module." + k: v for k, v in r50_adn_state.items()}
        },
        "torchvision.pth": r50_state,
    }
    for name, obj in paths.items():
        torch.save(obj, root / name)
    return root


# -- models ----------------------------------------------------------------------------------


def for_torchvision_weights(cfg):
    """``cfg`` set as torchvision-style weights need (stride in the 3x3 conv, RGB, ImageNet
    mean/std): a checkpointer made from it then loads them."""
    for key, value in TORCHVISION_WEIGHTS_CONFIG.items():
        *path, name = key.split(".")
        setattr(functools.reduce(getattr, path, cfg), name, value)
    return cfg


def bare_backbone(depth=50, norm="BN", **overrides):
    cfg = make_adn_cfg(depth, "build_resnet_adn_backbone", norm=norm, **overrides)
    return for_torchvision_weights(cfg), build_backbone(cfg, ShapeSpec(channels=3))


def detector(
    backbone="build_resnet_adn_fpn_backbone",
    config="COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    depth="FFFF",
):
    cfg = get_cfg()
    adadet.add_adn_config(cfg)
    cfg.merge_from_file(detectron2_zoo_config(config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ADN.DEPTH = depth
    cfg.MODEL.BACKBONE.NAME = backbone
    return cfg, build_model(cfg)


@pytest.fixture
def checkpoint_log():
    """Messages of the checkpointer's logger (attached directly: Detectron2's
    setup_logger, if a test ran it, stops propagation to pytest's handler)."""
    records = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("fvcore.common.checkpoint")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [r.getMessage() for r in records]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# -- official ADN / torchvision layouts ------------------------------------------------------


def test_official_adn_checkpoint_loads_into_mask_rcnn(files, r50_adn_state):
    cfg, model = detector()
    checkpointer = ADNCheckpointer(model)
    extra = checkpointer.resume_or_load(str(files / "adn_model.pt"), resume=False)

    backbone = model.backbone.bottom_up
    checked = assert_backbone_equals(backbone.state_dict(), r50_adn_state)
    assert checked == len(backbone.state_dict())  # FrozenBN: no counters, all checked
    # Skip norms come from bn*_skip, not from the main norms (the sources differ).
    assert torch.equal(
        backbone.res2[0].conv1.norm_skip.weight, r50_adn_state["layer1.0.bn1_skip.weight"]
    )
    assert torch.equal(
        backbone.res4[2].conv3.norm_skip.running_var, r50_adn_state["layer3.2.bn3_skip.running_var"]
    )
    assert not torch.equal(
        backbone.res2[0].conv1.norm_skip.weight, backbone.res2[0].conv1.norm.weight
    )
    assert checkpointer.needs_torchvision_config
    assert "epoch" not in extra and "optimizer" not in extra  # ImageNet run state dropped


def test_official_adn_checkpoint_into_c4_model(files, r50_adn_state, checkpoint_log):
    """C4: res2-4 in the ADN backbone, res5 (no skip norms) in the ROI heads, both found by
    Detectron2's matching; res5's skip norms have no place and are ignored, not an error."""
    c4 = "COCO-Detection/faster_rcnn_R_50_C4_1x.yaml"
    cfg, model = detector("build_resnet_adn_backbone", c4, depth="FFF")  # 3 stages: res2-4
    ADNCheckpointer(model).load(str(files / "adn_flat.pth"))
    source = {k: v for k, v in r50_adn_state.items() if not k.startswith("layer4.")}
    backbone = model.backbone.state_dict()
    assert assert_backbone_equals(backbone, source) == len(backbone)
    res5 = {"res5." + k: v for k, v in model.roi_heads.res5.state_dict().items()}
    assert assert_backbone_equals(res5, r50_adn_state) == len(res5)
    assert any(m.startswith("Ignored") and "res5.0.conv1.norm_skip" in m for m in checkpoint_log())


@pytest.mark.parametrize("name", ["adn_flat.pth", "adn_module_state_dict.pth"])
def test_official_adn_checkpoint_nesting_and_prefix(files, r50_adn_state, name):
    cfg, backbone = bare_backbone(norm="BN")
    ADNCheckpointer(backbone).load(str(files / name))
    checked = assert_backbone_equals(backbone.state_dict(), r50_adn_state)
    assert checked == len(backbone.state_dict())  # BN: counters too (bn*_skip's included)


def test_torchvision_checkpoint_starts_skip_norms_as_main_norms(files, r50_state, checkpoint_log):
    cfg, backbone = bare_backbone(norm="BN")
    ADNCheckpointer(backbone).load(str(files / "torchvision.pth"))

    checked = assert_backbone_equals(backbone.state_dict(), r50_state, skip_norms_from_main=True)
    assert checked == len(backbone.state_dict())
    lines = [m for m in checkpoint_log() if "skip norms" in m and "Initialised" in m]
    assert len(lines) == 1
    assert "Initialised 27 skip norms" in lines[0] and "torchvision.pth" in lines[0]
    assert "non-ADN" in lines[0]


def test_error_policy_refuses_checkpoint_without_skip_norms(files):
    cfg, backbone = bare_backbone(MODEL__ADN__SKIP_NORM_INIT="error")
    checkpointer = ADNCheckpointer.from_config(cfg, backbone)
    assert checkpointer.skip_norm_init == "error"
    with pytest.raises(SkipNormsMissingError, match="SKIP_NORM_INIT") as info:
        checkpointer.load(str(files / "torchvision.pth"))
    assert "torchvision.pth" in str(info.value) and "27" in str(info.value)
    # An official ADN checkpoint has them: the same policy accepts it.
    cfg, backbone = bare_backbone(MODEL__ADN__SKIP_NORM_INIT="error")
    ADNCheckpointer.from_config(cfg, backbone).load(str(files / "adn_flat.pth"))


def test_invalid_policy_is_refused():
    with pytest.raises(ValueError, match="SKIP_NORM_INIT"):
        ADNCheckpointer(torch.nn.Linear(1, 1), skip_norm_init="zeros")


def test_resnet18_official_adn_layout(tmp_path, r18_adn_state):
    torch.save(r18_adn_state, tmp_path / "r18_adn.pth")
    cfg, backbone = bare_backbone(depth=18)
    ADNCheckpointer(backbone).load(str(tmp_path / "r18_adn.pth"))
    assert assert_backbone_equals(backbone.state_dict(), r18_adn_state) == len(
        backbone.state_dict()
    )
    assert torch.equal(
        backbone.res3[0].conv2.norm_skip.bias, r18_adn_state["layer2.0.bn2_skip.bias"]
    )


# -- Detectron2 / MSRA layouts ---------------------------------------------------------------


def caffe2_name(d2_key):
    """MSRA R-50.pkl blob names: res2_0_branch2a_w, res2_0_branch2a_bn_s, res_conv1_bn_b."""
    key = d2_key.replace("stem.conv1.norm.", "res_conv1_bn.").replace("stem.conv1.", "conv1.")
    key = key.replace(".shortcut", ".branch1")
    for k, letter in ((1, "a"), (2, "b"), (3, "c")):
        key = key.replace(f".conv{k}", f".branch2{letter}")
    key = key.replace(".norm.", "_bn.").replace("_bn.weight", "_bn_s").replace("_bn.bias", "_bn_b")
    key = key.replace(".weight", "_w")
    return key.replace(".", "_")


@pytest.mark.parametrize(
    "layout", ["caffe2.pkl", "detectron2_heuristics.pkl", "detectron2_bare.pth"]
)
def test_detectron2_and_msra_layouts(tmp_path, r50_state, checkpoint_log, layout):
    d2_state = {d2_name(k): v for k, v in r50_state.items() if not k.startswith("fc.")}
    d2_state = {k: v for k, v in d2_state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / layout
    if layout == "caffe2.pkl":
        # MSRA's BN is folded into scale/bias: no running statistics.
        blobs = {
            caffe2_name(k): v.numpy()
            for k, v in d2_state.items()
            if not k.endswith(("running_mean", "running_var"))
        }
        blobs.update(fc1000_w=torch.randn(1000, 2048).numpy(), fc1000_b=torch.randn(1000).numpy())
        assert (
            "res2_0_branch2a_w" in blobs
            and "res_conv1_bn_s" in blobs
            and "res3_0_branch1_bn_b" in blobs
        )
        with open(path, "wb") as f:
            pickle.dump(blobs, f)
    elif layout == "detectron2_heuristics.pkl":
        with open(path, "wb") as f:
            model = {k: v.numpy() for k, v in d2_state.items()}
            pickle.dump({"model": model, "__author__": "test", "matching_heuristics": True}, f)
    else:
        torch.save(d2_state, path)

    if layout == "caffe2.pkl":
        cfg, model = detector()
        backbone = model.backbone.bottom_up
    else:  # FPN backbone: weights land under "bottom_up." (cheaper than a whole detector)
        cfg = make_adn_cfg(50, "build_resnet_adn_fpn_backbone", norm="FrozenBN")
        model = build_backbone(cfg, ShapeSpec(channels=3))
        backbone = model.bottom_up
    checkpointer = ADNCheckpointer(model)
    checkpointer.load(str(path))
    assert not checkpointer.needs_torchvision_config
    for key, value in backbone.state_dict().items():
        main = key.replace(".norm_skip.", ".norm.")
        if layout == "caffe2.pkl" and main.endswith("running_mean"):
            assert torch.equal(value, torch.zeros_like(value)), key
        elif layout == "caffe2.pkl" and main.endswith("running_var"):
            assert torch.equal(value, torch.ones_like(value)), key
        else:
            assert torch.equal(value, d2_state[main]), key
    assert any("Initialised 27 skip norms" in m for m in checkpoint_log())


def test_full_detectron2_model_without_skip_norms(tmp_path, checkpoint_log):
    """A whole plain Detectron2 model (like a model-zoo final model: full names, no skip
    norms) into its ADN version; a ResNet-FPN stands in for the detector to keep it fast."""
    cfg = make_adn_cfg(50, "build_resnet_fpn_backbone", norm="FrozenBN")
    plain = build_backbone(cfg, ShapeSpec(channels=3))
    plain_state = randomized(plain.state_dict(), seed=5)
    torch.save({"model": plain_state, "__author__": "Detectron2 Model Zoo"}, tmp_path / "plain.pth")

    cfg.MODEL.BACKBONE.NAME = "build_resnet_adn_fpn_backbone"
    model = build_backbone(cfg, ShapeSpec(channels=3))
    ADNCheckpointer(model).load(str(tmp_path / "plain.pth"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, plain_state[key.replace(".norm_skip.", ".norm.")]), key
    assert any("Initialised 27 skip norms" in m for m in checkpoint_log())


def test_plain_detectron2_resnet_is_unaffected(files, r50_state, r50_adn_state, checkpoint_log):
    cfg = make_adn_cfg(50, "build_resnet_backbone", norm="BN")
    plain = build_backbone(cfg, ShapeSpec(channels=3))
    ADNCheckpointer(plain).load(str(files / "torchvision.pth"))
    assert assert_backbone_equals(plain.state_dict(), r50_state) == len(plain.state_dict())
    assert not any("Initialised" in m or "Ignored" in m for m in checkpoint_log())

    # The official ADN weights give a plain ResNet their super-net norms; skip norms unused.
    plain = build_backbone(cfg, ShapeSpec(channels=3))
    ADNCheckpointer(plain).load(str(files / "adn_flat.pth"))
    assert assert_backbone_equals(plain.state_dict(), r50_adn_state) == len(plain.state_dict())
    assert any(m.startswith("Ignored") and "skip-norm" in m for m in checkpoint_log())


# -- adadet's own checkpoints ----------------------------------------------------------------


def test_adadet_checkpoint_round_trip_restores_both_norm_sets(tmp_path):
    cfg, saved = bare_backbone(norm="BN")
    saved.load_state_dict(randomized(saved.state_dict(), seed=6))
    optimizer = torch.optim.SGD(saved.parameters(), lr=0.1, momentum=0.9)
    for param in saved.parameters():  # momentum buffers to restore
        param.grad = torch.randn_like(param)
    optimizer.step()
    ADNCheckpointer(saved, str(tmp_path), optimizer=optimizer).save("model_0000009", iteration=9)

    cfg, resumed = bare_backbone(norm="BN")
    optimizer2 = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    checkpointer = ADNCheckpointer(
        resumed, str(tmp_path), optimizer=optimizer2, skip_norm_init="error"
    )
    extra = checkpointer.resume_or_load("does-not-matter.pkl", resume=True)

    assert extra == {"iteration": 9}
    expected = saved.state_dict()
    assert any(".norm_skip." in k for k in expected)
    for key, value in resumed.state_dict().items():
        assert torch.equal(value, expected[key]), key
    skip, main = resumed.res3[0].conv1.norm_skip, resumed.res3[0].conv1.norm
    assert not torch.equal(skip.running_mean, main.running_mean)
    assert optimizer2.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


# -- bad input -------------------------------------------------------------------------------


def test_resnet101_into_resnet50_is_refused(tmp_path, r50_state):
    # torchvision's R-101 layout: layer3 has 23 blocks of R-50's layer3 shapes.
    r101 = dict(r50_state)
    for block in range(6, 23):
        for key, value in r50_state.items():
            if key.startswith("layer3.5."):
                r101[key.replace("layer3.5.", f"layer3.{block}.")] = value.clone()
    torch.save(r101, tmp_path / "r101.pth")
    cfg, backbone = bare_backbone()
    with pytest.raises(CheckpointMismatchError) as info:
        ADNCheckpointer(backbone).load(str(tmp_path / "r101.pth"))
    message = str(info.value)
    assert "r101.pth" in message and "ResNet-101" in message and "ResNet-50" in message
    # 17 extra blocks x (3 convs + 3 norms x 4 tensors), named
    assert re.search(r"res4\.\d+\.conv1", message) and "(255 in all)" in message
    assert "MODEL.RESNETS.DEPTH: 101" in message


def test_resnet18_into_resnet50_is_refused_naming_shapes(tmp_path, r18_adn_state):
    torch.save(r18_adn_state, tmp_path / "r18.pth")
    cfg, backbone = bare_backbone()
    with pytest.raises(CheckpointMismatchError) as info:
        ADNCheckpointer(backbone).load(str(tmp_path / "r18.pth"))
    message = str(info.value)
    assert "r18.pth" in message
    assert (
        "res2.0.conv1.weight: (64, 64, 3, 3) in the checkpoint, (64, 64, 1, 1) in the model"
        in message
    )
    assert "ResNet-18" in message and "RES2_OUT_CHANNELS: 64" in message


def test_vit_checkpoint_is_refused(tmp_path):
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    torch.save({"model": vit.state_dict()}, tmp_path / "vit.pth")
    cfg, backbone = bare_backbone()
    with pytest.raises(CheckpointMismatchError, match="holds ViT weights") as info:
        ADNCheckpointer(backbone).load(str(tmp_path / "vit.pth"))
    assert "vit.pth" in str(info.value) and "no ViT-ADN backbone" in str(info.value)
    assert "tools/convert_adn_weights.py" in str(info.value)


def test_the_converter_tells_vit_weights_by_their_keys(tmp_path, capsys):
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=8, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    converter = load_tool("convert_adn_weights")
    torch.save({"model": vit.state_dict()}, tmp_path / "vit.pth")
    assert converter.main([str(tmp_path / "vit.pth"), str(tmp_path / "out.pkl")]) == 0
    printed = capsys.readouterr().out
    assert "torchvision ViT weights" in printed and "to ViT-ADN names" in printed
    with open(tmp_path / "out.pkl", "rb") as f:
        assert "blocks.0.norm1.norm_skip.weight" in pickle.load(f)["model"]
    # a ViT file that needs --trust: the refusal names the one converter
    path = tmp_path / "vit_dated.pth"
    torch.save({"model": vit.state_dict(), "date": datetime.date(2024, 1, 1)}, path)
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointReadError) as info:
        ADNCheckpointer(backbone).load(str(path))
    assert "tools/convert_adn_weights.py --trust" in str(info.value)


def test_mandatory_split_mismatch_is_refused(files):
    cfg, backbone = bare_backbone(MODEL__ADN__NUM_MANDATORY_BLOCKS=[1, 2, 3, 2])
    with pytest.raises(CheckpointMismatchError, match=r"NUM_MANDATORY_BLOCKS: \[2, 2, 3, 2\]"):
        ADNCheckpointer(backbone).load(str(files / "adn_flat.pth"))


def test_unknown_keys_in_torchvision_layout_are_refused(tmp_path, r18_adn_state):
    torch.save({**r18_adn_state, "layer1.0.se.fc1.weight": torch.zeros(4, 4)}, tmp_path / "se.pth")
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointFormatError, match=r"layer1\.0\.se\.fc1\.weight"):
        ADNCheckpointer(backbone).load(str(tmp_path / "se.pth"))


def test_missing_file(tmp_path):
    cfg, backbone = bare_backbone(depth=18)
    path = str(tmp_path / "nowhere.pth")
    with pytest.raises(CheckpointNotFoundError, match="nowhere.pth") as info:
        ADNCheckpointer(backbone).resume_or_load(path, resume=False)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["truncated.pth", "truncated.pkl", "garbage.pth"])
def test_corrupt_file(tmp_path, r18_adn_state, name):
    path = tmp_path / name
    if name == "truncated.pth":
        torch.save(r18_adn_state, path)
    elif name == "truncated.pkl":
        with open(path, "wb") as f:
            pickle.dump({"model": {k: v.numpy() for k, v in r18_adn_state.items()}}, f)
    else:
        path.write_bytes(b"this is not a checkpoint\n" * 10)
    if name.startswith("truncated"):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointReadError, match=re.escape(str(path))) as info:
        ADNCheckpointer(backbone).load(str(path))
    assert "corrupt" in str(info.value)


def test_no_state_dict_in_file(tmp_path):
    torch.save({"epoch": 3, "notes": "no weights here"}, tmp_path / "empty.pth")
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointFormatError, match="no state dict"):
        ADNCheckpointer(backbone).load(str(tmp_path / "empty.pth"))


@pytest.mark.parametrize(
    "name, content, holds",
    [
        ("dict.pth", {"a": 1}, "it holds a dict with 1 entry: 'a' (int 1)."),
        ("tensor.pth", torch.zeros(3, 4), "it holds a single tensor of shape (3, 4) (torch.float32)"),
        ("dict.pkl", {"a": 1}, "it holds a dict with 1 entry: 'a' (int 1)."),
    ],
)
def test_what_a_file_without_state_dict_holds_is_named(tmp_path, capsys, name, content, holds):
    path = tmp_path / name
    if name.endswith(".pkl"):
        path.write_bytes(pickle.dumps(content))
    else:
        torch.save(content, path)
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointFormatError) as info:
        ADNCheckpointer(backbone).load(str(path))
    message = str(info.value)
    assert holds in message and "it holds: model" not in message and "truncated" not in message
    assert "A checkpoint must hold a state dict, a mapping of parameter names to tensors" in message
    if not name.endswith(".pkl"):  # the converter takes .pth files only
        assert load_tool("convert_adn_weights").main([str(path), str(tmp_path / "out.pkl")]) == 1
        err = capsys.readouterr().err
        assert holds in err and "A checkpoint must hold a state dict" in err


def official_training_checkpoint(state, *, ema=None):
    """The layout of the official ADN training checkpoints (torchvision's reference
    script): weights, optimizer, scheduler, epoch and the argparse.Namespace of arguments;
    ``ema``: the ``model_ema`` entry (an AveragedModel's state dict) of --model-ema runs."""
    checkpoint = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0]}]},
        "lr_scheduler": {"last_epoch": 300, "base_lrs": [0.5], "_last_lr": [0.0]},
        "epoch": 299,
        "args": argparse.Namespace(
            model="resnet50", lr=0.5, epochs=300, model_ema=ema is not None, data_path="/imagenet"
        ),
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 12},
    }
    if ema is not None:
        checkpoint["model_ema"] = ema
    return checkpoint


def test_official_training_checkpoint_needs_no_trust(tmp_path, r18_adn_state, capsys):
    path = tmp_path / "checkpoint.pth"
    torch.save(official_training_checkpoint(r18_adn_state), path)
    cfg, backbone = bare_backbone(depth=18)
    ADNCheckpointer(backbone).load(str(path))  # weights_only=True, Namespace allowed
    assert assert_backbone_equals(backbone.state_dict(), r18_adn_state) > 0
    assert load_tool("convert_adn_weights").main([str(path), str(tmp_path / "out.pkl")]) == 0
    assert "Skip norms: 8 found" in capsys.readouterr().out


def test_other_pickled_objects_need_trust(tmp_path, r18_adn_state, capsys):
    path = tmp_path / "with_date.pth"
    torch.save({"model": r18_adn_state, "date": datetime.date(2024, 1, 1)}, path)
    cfg, backbone = bare_backbone(depth=18)
    with pytest.raises(CheckpointReadError, match="--trust") as info:
        ADNCheckpointer(backbone).load(str(path))
    assert "datetime.date" in str(info.value)
    assert "tools/convert_adn_weights.py --trust" in str(info.value)
    converter = load_tool("convert_adn_weights")
    assert converter.main([str(path), str(tmp_path / "out.pkl")]) == 1
    assert "--trust" in capsys.readouterr().err
    assert converter.main(["--trust", str(path), str(tmp_path / "out.pkl")]) == 0


@pytest.fixture
def ema_checkpoint(tmp_path, r18_adn_state):
    """An official --model-ema checkpoint: ``model_ema`` is torchvision's
    ExponentialMovingAverage state dict ("module." prefix, "n_averaged"), of other values
    than ``model``."""
    ema_state = randomized(r18_adn_state, seed=11)
    ema = {"n_averaged": torch.tensor(1234), **{"module." + k: v for k, v in ema_state.items()}}
    path = tmp_path / "ema.pth"
    torch.save(official_training_checkpoint(r18_adn_state, ema=ema), path)
    return path, ema_state


def test_load_ema_loads_the_ema_weights(ema_checkpoint, checkpoint_log):
    path, ema_state = ema_checkpoint
    cfg, backbone = bare_backbone(depth=18, MODEL__ADN__LOAD_EMA=True)
    ADNCheckpointer.from_config(cfg, backbone).resume_or_load(str(path), resume=False)
    checked = assert_backbone_equals(backbone.state_dict(), ema_state)
    assert checked > 0
    assert any("Loading the EMA weights ('model_ema'" in m for m in checkpoint_log())


def test_model_weights_by_default_and_the_log_names_model_ema(
    ema_checkpoint, r18_adn_state, checkpoint_log
):
    path, _ = ema_checkpoint
    cfg, backbone = bare_backbone(depth=18)
    assert cfg.MODEL.ADN.LOAD_EMA is False
    ADNCheckpointer.from_config(cfg, backbone).load(str(path))
    assert assert_backbone_equals(backbone.state_dict(), r18_adn_state) > 0
    [line] = [m for m in checkpoint_log() if "'model_ema'" in m]
    assert "Loading the 'model' weights" in line and "set MODEL.ADN.LOAD_EMA True" in line


def test_load_ema_without_model_ema_names_the_file_and_its_entries(tmp_path, r18_adn_state):
    path = tmp_path / "no_ema.pth"
    torch.save(official_training_checkpoint(r18_adn_state), path)
    cfg, backbone = bare_backbone(depth=18, MODEL__ADN__LOAD_EMA=True)
    with pytest.raises(CheckpointFormatError) as info:
        ADNCheckpointer.from_config(cfg, backbone).load(str(path))
    message = str(info.value)
    assert str(path) in message and "no 'model_ema' entry" in message
    assert "model, optimizer, lr_scheduler, epoch, args, scaler" in message
    assert "MODEL.ADN.LOAD_EMA" in message


def test_resume_ignores_load_ema(tmp_path):
    cfg, backbone = bare_backbone(depth=18)
    ADNCheckpointer(backbone, str(tmp_path)).save("model_0000004")
    cfg, other = bare_backbone(depth=18, MODEL__ADN__LOAD_EMA=True)
    ADNCheckpointer.from_config(cfg, other, str(tmp_path)).resume_or_load("", resume=True)
    for key, value in backbone.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key


def test_resume_from_a_last_checkpoint_naming_a_missing_file(tmp_path):
    cfg, backbone = bare_backbone(depth=18)
    checkpointer = ADNCheckpointer(backbone, str(tmp_path))
    checkpointer.save("model_0000009")
    (tmp_path / "last_checkpoint").write_text("model_0000019.pth")  # e.g. deleted since
    with pytest.raises(CheckpointNotFoundError) as info:
        checkpointer.resume_or_load("", resume=True)
    message = str(info.value)
    assert f"{tmp_path / 'last_checkpoint'} names model_0000019.pth, which does not exist" in message
    assert "restore that file" in message and "or start without --resume" in message
    assert "model_0000009.pth" in message  # the one that does exist
    # without --resume MODEL.WEIGHTS is loaded, last_checkpoint is not read
    checkpointer.resume_or_load(str(tmp_path / "model_0000009.pth"), resume=False)


def test_converter_ema(ema_checkpoint, tmp_path, r18_adn_state, capsys):
    path, ema_state = ema_checkpoint
    converter = load_tool("convert_adn_weights")
    assert converter.main([str(path), str(tmp_path / "raw.pkl")]) == 0
    assert "--ema converts the EMA weights instead" in capsys.readouterr().out
    assert converter.main(["--ema", str(path), str(tmp_path / "ema.pkl")]) == 0
    assert "Read the EMA weights ('model_ema')" in capsys.readouterr().out
    for name, source in (("raw.pkl", r18_adn_state), ("ema.pkl", ema_state)):
        cfg, backbone = bare_backbone(depth=18)
        ADNCheckpointer(backbone).load(str(tmp_path / name))
        assert assert_backbone_equals(backbone.state_dict(), source) > 0, name
    # LOAD_EMA accepts the converted EMA weights, refuses the converted raw ones
    cfg, backbone = bare_backbone(depth=18, MODEL__ADN__LOAD_EMA=True)
    ADNCheckpointer.from_config(cfg, backbone).load(str(tmp_path / "ema.pkl"))
    with pytest.raises(CheckpointFormatError, match="no 'model_ema' entry"):
        ADNCheckpointer.from_config(cfg, backbone).load(str(tmp_path / "raw.pkl"))
    # --ema on a file without EMA weights: refused, nothing written
    no_ema = tmp_path / "no_ema.pth"
    torch.save(official_training_checkpoint(r18_adn_state), no_ema)
    assert converter.main(["--ema", str(no_ema), str(tmp_path / "x.pkl")]) == 1
    assert "no 'model_ema' entry" in capsys.readouterr().err
    assert not (tmp_path / "x.pkl").exists()


# -- converter CLI and config check ----------------------------------------------------------


def test_convert_then_load_through_model_weights(files, tmp_path, r50_adn_state, capsys):
    output = tmp_path / "r50_adn.pkl"
    assert load_tool("convert_adn_weights").main([str(files / "adn_model.pt"), str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Converted 453 tensors" in printed  # 320 + 53 counters + 27 skip norms x 3 + counters
    assert "Skip norms: 27 found" in printed and "[2, 2, 3, 2]" in printed
    for line in (
        "STRIDE_IN_1X1: False",
        'FORMAT: "RGB"',
        "PIXEL_MEAN: [123.675, 116.280, 103.530]",
        "PIXEL_STD: [58.395, 57.120, 57.375]",
        "DEPTH: 50",
    ):
        assert line in printed

    with open(output, "rb") as f:
        converted = pickle.load(f)
    assert (
        converted["matching_heuristics"] and "res2.0.conv1.norm_skip.weight" in converted["model"]
    )

    # Detectron2's defaults (MSRA: stride in the 1x1 conv, BGR, mean only) would run these
    # weights without failing, only detecting poorly: the config's checkpointer refuses.
    cfg, model = detector()
    cfg.MODEL.WEIGHTS = str(output)
    checkpointer = ADNCheckpointer.from_config(cfg, model, skip_norm_init="error")
    with pytest.raises(WeightsConfigError) as info:
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    assert checkpointer.needs_torchvision_config and str(output) in str(info.value)
    for key in ("STRIDE_IN_1X1", "INPUT.FORMAT", "PIXEL_MEAN", "PIXEL_STD"):
        assert key in str(info.value)

    cfg = for_torchvision_weights(cfg)  # as the converter printed
    assert torchvision_config_mismatches(cfg) == []
    model = build_model(cfg)
    ADNCheckpointer.from_config(cfg, model, skip_norm_init="error").resume_or_load(
        cfg.MODEL.WEIGHTS, resume=False
    )
    backbone = model.backbone.bottom_up.state_dict()
    assert assert_backbone_equals(backbone, r50_adn_state) == len(backbone)


def test_converter_without_skip_norms_and_refusals(files, tmp_path, capsys):
    converter = load_tool("convert_adn_weights")
    assert converter.main([str(files / "torchvision.pth"), str(tmp_path / "tv.pkl")]) == 0
    printed = capsys.readouterr().out
    assert "Skip norms: none found" in printed and "copy of its main norm" in printed
    assert "NUM_MANDATORY_BLOCKS" not in printed

    assert converter.main([str(tmp_path / "tv.pkl"), str(tmp_path / "again.pkl")]) == 1
    assert converter.main([str(tmp_path / "missing.pth"), str(tmp_path / "x.pkl")]) == 1
    torch.save({"model": {"head.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    assert converter.main([str(tmp_path / "other.pth"), str(tmp_path / "x.pkl")]) == 1
    assert "neither a torchvision-layout ResNet" in capsys.readouterr().err
    # the options that do not fit ResNet weights without skip norms
    tv = str(files / "torchvision.pth")
    assert converter.main(["--skip-norm-init", "error", tv, str(tmp_path / "x.pkl")]) == 1
    assert "has no skip norms (bn*_skip)" in capsys.readouterr().err
    vit_config = str(ROOT / "configs" / "mask_rcnn_ada_vit_b.yaml")
    assert converter.main(["--config-file", vit_config, tv, str(tmp_path / "x.pkl")]) == 1
    assert "Fix: leave out --config-file" in capsys.readouterr().err
    assert not (tmp_path / "x.pkl").exists()
