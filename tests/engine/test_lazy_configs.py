"""LazyConfig support: configs/lazy/*.py build the same detectors as the YACS configs, and
tools/lazyconfig_train_net.py trains with self-distillation, evaluates every depth,
resumes and evaluates a checkpoint (--eval-only), with Detectron2's key=value overrides."""
import json
import os

import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from adadet import add_adn_config, set_depth
from adn_testing import load_tool
from engine_tiny_data import HERE, read_metrics

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CONFIGS = os.path.join(REPO, "configs")


def _yacs_model(name):
    cfg = get_cfg()
    add_adn_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, name + ".yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return build_model(cfg)


def _lazy_model(name):
    return instantiate(LazyConfig.load(os.path.join(CONFIGS, "lazy", name + ".py")).model)


def _tree(model):
    return [(name, type(module).__name__) for name, module in model.named_modules()]


# loss_weight: Detectron2's YACS path gives the box predictor {"loss_box_reg": 1.0}, its
# lazy path {"loss_cls": 1.0, "loss_box_reg": 1.0}; missing weights are 1.0 (compared below)
SKIPPED = ("training", "loss_weight")


def _settings(obj):
    """The plain attributes of a module or helper object (Matcher, Box2BoxTransform...),
    recursively; submodules, parameters and buffers are compared separately."""
    if OmegaConf.is_config(obj):  # lazy configs pass lists on as ListConfig
        obj = OmegaConf.to_container(obj)
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_settings(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _settings(v) for k, v in obj.items()}
    if hasattr(obj, "__dict__"):
        return {type(obj).__name__: {k: _settings(v) for k, v in vars(obj).items()
                                     if not k.startswith("_") and k not in SKIPPED}}
    return repr(obj)


def _shapes(model):
    return {key: (tuple(v.shape), v.dtype) for key, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "name",
    ["mask_rcnn_ada_r18_embedded_cpu", "mask_rcnn_ada_r50", "mask_rcnn_ada_r50_whole",
     "mask_rcnn_ada_vit_b"],
)
def test_lazy_and_yacs_configs_build_the_same_detector(name):
    torch.manual_seed(0)
    yacs, lazy = _yacs_model(name), _lazy_model(name)
    assert _tree(lazy) == _tree(yacs)
    assert _shapes(lazy) == _shapes(yacs)
    for attribute in ("input_format", "vis_period"):
        assert getattr(lazy, attribute) == getattr(yacs, attribute)
    assert torch.equal(lazy.pixel_mean, yacs.pixel_mean) and torch.equal(lazy.pixel_std, yacs.pixel_std)
    # what the module tree does not show: the heads' and the RPN's settings
    for module in ("proposal_generator", "roi_heads", "roi_heads.box_predictor"):
        assert _settings(lazy.get_submodule(module)) == _settings(yacs.get_submodule(module))
    for model in (yacs, lazy):
        weights = model.roi_heads.box_predictor.loss_weight
        assert {k: weights.get(k, 1.0) for k in ("loss_cls", "loss_box_reg")} == {
            "loss_cls": 1.0, "loss_box_reg": 1.0}
    lazy.load_state_dict(yacs.state_dict())
    yacs.eval(), lazy.eval()
    image = torch.rand(3, 64, 96) * 255
    with torch.no_grad():
        tensor = yacs.preprocess_image([{"image": image}]).tensor
        for depth in ("FFFF", "TFTF", "TTTT"):
            set_depth(yacs, depth), set_depth(lazy, depth)
            expected, got = yacs.backbone(tensor), lazy.backbone(tensor)
            assert expected.keys() == got.keys()
            for level in expected:  # the same modules with the same weights: equal outputs
                torch.testing.assert_close(got[level], expected[level], rtol=1e-5, atol=1e-5)
        # the whole detector once, on few proposals (it is the slow part on CPU)
        for model in (yacs, lazy):
            model.proposal_generator.post_nms_topk[False] = 20
        a = yacs([{"image": image}])[0]["instances"]
        b = lazy([{"image": image}])[0]["instances"]
    assert len(a) == len(b)
    torch.testing.assert_close(b.scores, a.scores, rtol=1e-4, atol=1e-4)


def _args(*argv):
    parser = default_argument_parser()
    parser.add_argument("--allow-random-weights", action="store_true")
    config = os.path.join(CONFIGS, "lazy", "mask_rcnn_ada_r18_embedded_cpu.py")
    return parser.parse_args(["--config-file", config, *argv])


def _tiny_opts(output_dir, max_iter):
    """The demo's lazy config on the tiny test data, as command-line overrides."""
    return [
        "dataloader.train.dataset.names=adadet_test_tiny_train",
        "dataloader.test.dataset.names=adadet_test_tiny_val",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
        "dataloader.test.mapper.augmentations.0.short_edge_length=64",
        "model.roi_heads.num_classes=2",
        "adn.test_depths=[FFFF,TTTT]",
        f"train.max_iter={max_iter}",
        "train.checkpointer.period=2",
        "train.log_period=1",
        f"train.output_dir={output_dir}",
    ]


def test_lazy_tool_trains_resumes_and_evaluates_every_depth(tiny_dataset, tmp_path):
    tool = load_tool("lazyconfig_train_net")
    out = str(tmp_path)
    results = tool.main(_args(*_tiny_opts(out, 3)))
    assert list(results) == ["FFFF", "TTTT"] and "bbox" in results["TTTT"]
    metrics = read_metrics(out)
    losses = [m for m in metrics if "loss_kd" in m]
    assert [m["iteration"] for m in losses] == [0, 1, 2]
    assert all("sub/loss_cls" in m and "super/loss_cls" in m for m in losses)
    assert "TTTT/bbox/AP" in metrics[-1] and "FFFF/cost/backbone_gflops" in metrics[-1]
    with open(os.path.join(out, "depth_eval.json")) as f:
        assert [row["depth"] for row in json.load(f)["depths"]] == ["FFFF", "TTTT"]

    # --resume continues at iteration 3 from the last checkpoint, optimizer included
    first_final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert first_final["iteration"] == 2 and "optimizer" in first_final["trainer"]
    tool.main(_args("--resume", *_tiny_opts(out, 5)))
    iterations = [m["iteration"] for m in read_metrics(out) if "loss_kd" in m]
    assert iterations == [0, 1, 2, 3, 4]
    final = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)
    assert final["iteration"] == 4

    # --eval-only evaluates the checkpoint: the numbers of the end-of-training evaluation
    trained = read_metrics(out)[-1]
    evaluated = tool.main(
        _args("--eval-only", *_tiny_opts(out, 5),
              f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}")
    )
    for depth in ("FFFF", "TTTT"):
        assert evaluated[depth]["bbox"]["AP"] == pytest.approx(trained[f"{depth}/bbox/AP"], abs=1e-6)


def test_lazy_tool_names_bad_input(tiny_dataset, tmp_path, capsys):
    tool = load_tool("lazyconfig_train_net")
    with pytest.raises(SystemExit, match="empty train.init_checkpoint would evaluate randomly"):
        tool.main(_args("--eval-only", *_tiny_opts(str(tmp_path), 1)))
    with pytest.raises(SystemExit, match=r"'train.max_iters=5': train has no key 'max_iters'"):
        tool.load_config(_args("train.max_iters=5"))  # Detectron2 would add the key silently
    with pytest.raises(SystemExit, match=r"model.backbone.bottom_up has no key 'no_such_arg'"):
        tool.load_config(_args("model.backbone.bottom_up.no_such_arg=1"))
    # an argument the LazyCall's target takes may be added
    cfg = tool.load_config(_args("model.backbone.bottom_up.switch_shortcut_norm=True"))
    assert cfg.model.backbone.bottom_up.switch_shortcut_norm is True
    with pytest.raises(ValueError, match=r"adn.test_depths \['FFFX'\]"):
        tool.main(_args(*_tiny_opts(str(tmp_path), 1), "adn.test_depths=[FFFX]"))
    assert not os.path.exists(os.path.join(tmp_path, "model_final.pth"))
