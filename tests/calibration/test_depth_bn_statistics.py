"""Per-depth BatchNorm statistics: re-estimated at each depth, used by set_depth, kept by
checkpoints and exports, discarded by training."""
import copy

import pytest
import torch
from detectron2.modeling import build_model

from adadet import set_depth, using_depth
from adadet.checkpoint import ADNCheckpointer
from adadet.deploy.export import export_torchscript
from adadet.calibration import (
    calibrate_depth_bn_statistics,
    calibrated_depths,
    discard_depth_bn_statistics,
)
from adn_testing import make_project_cfg, synthetic_batch

DEMO = "mask_rcnn_ada_r18_embedded_cpu.yaml"

DEPTHS = ["FFFF", "TTTF"]


@pytest.fixture(scope="module")
def trained():
    """A small R-18-ADN Mask R-CNN whose BN running statistics are far from those of its
    inputs (as after training at two depths only)."""
    cfg = make_project_cfg(DEMO)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(0.5)
            m.running_var.fill_(4.0)
    batches = [synthetic_batch(2, seed=s) for s in range(3)]
    return cfg, model, batches


def _stats(bn):
    return bn.running_mean.clone(), bn.running_var.clone()


def _res5_main_norm(model):
    return model.backbone.bottom_up.res5[0].conv1.norm  # used while res5 runs in full


def _outputs(model, batch):
    with torch.no_grad():
        return model.backbone(model.preprocess_image(batch).tensor)["p5"]


@pytest.fixture(scope="module")
def calibrated_once(trained):
    cfg, model, batches = trained
    model = copy.deepcopy(model)
    before = _outputs(model, batches[0])
    params = {k: v.clone() for k, v in model.state_dict().items()}
    assert calibrate_depth_bn_statistics(model, batches, DEPTHS, num_iter=3) == DEPTHS
    return cfg, model, batches, before, params


@pytest.fixture()
def calibrated(calibrated_once):
    cfg, model, batches, before, params = calibrated_once
    return cfg, copy.deepcopy(model), batches, before, params


def test_each_depth_gets_the_statistics_of_its_own_inputs(calibrated):
    cfg, model, batches, before, params = calibrated
    assert calibrated_depths(model) == DEPTHS
    bn = _res5_main_norm(model)
    stem = model.backbone.bottom_up.stem.conv1.norm
    set_depth(model, "FFFF")
    res5_full, stem_full = _stats(bn), _stats(stem)
    set_depth(model, "TTTF")
    res5_mixed, stem_mixed = _stats(bn), _stats(stem)
    # res5's input changes when res2-res4 skip; the stem's does not
    assert (res5_full[0] - res5_mixed[0]).abs().max() > 1e-3
    torch.testing.assert_close(stem_full, stem_mixed)
    # far from the trained statistics (0.5 / 4.0), which a depth not calibrated keeps
    assert (res5_mixed[1] - 4.0).abs().max() > 0.1
    set_depth(model, "TTFF")
    assert torch.equal(bn.running_mean, torch.full_like(bn.running_mean, 0.5))
    # weights and the trained statistics are unchanged; only new buffers were added
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in params.items() if "running" not in k)
    assert {k for k in state if k not in params} >= {
        "backbone.bottom_up.res5.0.conv1.norm.running_mean_TTTF",
        "backbone.bottom_up.res5.0.conv1.norm.running_var_trained",
    }
    # the statistics change what the model computes; discarding restores it exactly
    set_depth(model, "FFFF")
    assert (_outputs(model, batches[0]) - before).abs().max() > 1e-3
    discard_depth_bn_statistics(model)
    assert calibrated_depths(model) == []
    assert torch.equal(_outputs(model, batches[0]), before)
    assert not any("running_mean_" in k for k in model.state_dict())


def test_statistics_survive_save_and_load(calibrated, tmp_path):
    cfg, model, batches, _, _ = calibrated
    set_depth(model, "TTTF")
    expected = _outputs(model, batches[1])
    ADNCheckpointer(model, save_dir=str(tmp_path)).save("calibrated")

    torch.manual_seed(1)
    fresh = build_model(cfg).eval()
    ADNCheckpointer(fresh).load(str(tmp_path / "calibrated.pth"))
    assert calibrated_depths(fresh) == DEPTHS
    with using_depth(fresh, "TTTF"):
        torch.testing.assert_close(_outputs(fresh, batches[1]), expected, rtol=0, atol=0)
    set_depth(fresh, "TTFF")  # not calibrated: the trained statistics
    assert torch.equal(_res5_main_norm(fresh).running_mean, _res5_main_norm(model).running_mean_trained)


def test_export_at_a_depth_keeps_its_statistics(calibrated, tmp_path):
    _, model, batches, _, _ = calibrated
    model.roi_heads.box_predictor.test_topk_per_image = 10  # a quicker trace
    image = batches[0][0]["image"]
    report = export_torchscript(model, "TTTF", image, str(tmp_path / "m.ts"), verify=False)
    exported = torch.jit.load(report.path)
    with using_depth(model, "TTTF"), torch.no_grad():
        from adadet.utils.tracing import DetectorTracingAdapter

        eager = DetectorTracingAdapter(model)(image)
        discard_depth_bn_statistics(model)
        uncalibrated = DetectorTracingAdapter(model)(image)
    with torch.no_grad():
        got = exported(image)
    torch.testing.assert_close(got[1], eager[1], rtol=1e-4, atol=1e-5)  # scores
    # the export holds the TTTF statistics, not the trained ones
    assert got[1].shape != uncalibrated[1].shape or (got[1] - uncalibrated[1]).abs().max() > 1e-3


def test_training_discards_them_and_models_without_batchnorm_need_none(calibrated):
    from detectron2.utils.events import EventStorage

    from adadet.engine import SelfDistillationModel

    cfg, model, batches, _, _ = calibrated
    wrapper = SelfDistillationModel.from_config(cfg, model).train()
    with EventStorage(0):
        wrapper(batches[0], iteration=0)
    assert calibrated_depths(model) == []

    gn = build_model(make_project_cfg(DEMO, MODEL__RESNETS__NORM="GN")).eval()
    assert calibrate_depth_bn_statistics(gn, batches, DEPTHS, num_iter=1) == []
    with pytest.raises(ValueError, match="NUM_ITER"):
        calibrate_depth_bn_statistics(model, batches, DEPTHS, num_iter=0)
    with pytest.raises(ValueError, match="batches"):
        calibrate_depth_bn_statistics(model, batches, DEPTHS, num_iter=5)


def test_a_whole_detector_keys_its_statistics_by_the_backbones_letters():
    """Where the neck and heads adapt too, the backbone's BN layers (whose inputs depend on
    the backbone's letters alone) get one slot per backbone setting; BN layers after the
    backbone keep the trained statistics."""
    cfg = make_project_cfg(
        "mask_rcnn_ada_r18_textures_whole_cpu.yaml", MODEL__ROI_MASK_HEAD__NORM="BN"
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batches = [synthetic_batch(2, seed=s) for s in range(2)]
    got = calibrate_depth_bn_statistics(
        model, batches, ["TTTFTFT", "TTTFFFF", "FFFF"], num_iter=2
    )
    assert got == ["TTTF", "FFFF"]
    assert calibrated_depths(model) == ["FFFF", "TTTF"]
    mask_norms = [m for m in model.roi_heads.mask_head.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert mask_norms and not any(hasattr(bn, "running_mean_TTTF") for bn in mask_norms)
    norm = _res5_main_norm(model)
    with using_depth(model, "TTTFTTT"):  # any neck/head letters: the backbone's statistics
        assert torch.equal(norm.running_mean, norm.running_mean_TTTF)
    with using_depth(model, "FFFFTFT"):
        assert torch.equal(norm.running_mean, norm.running_mean_FFFF)
