"""Per-depth evaluation through ADNTrainer.test: one entry per setting with box and mask
metrics and cost, the report files, and the same detections after a checkpoint round trip."""
import json
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import adadet
from adadet.checkpoint import ADNCheckpointer
from adadet.engine import ADNTrainer

TINY_CONFIG = os.path.join(os.path.dirname(__file__), "..", "engine", "tiny_config.yaml")


@pytest.fixture(scope="module")
def cfg(tiny_dataset):
    cfg = get_cfg()
    adadet.add_adn_config(cfg)
    cfg.merge_from_file(TINY_CONFIG)
    cfg.TEST.ADN.DEPTHS = ["FFFF", "TTFF", "TTTT"]
    return cfg


def _evaluate(cfg, model, output_dir):
    cfg = cfg.clone()
    cfg.OUTPUT_DIR = str(output_dir)
    return ADNTrainer.test(cfg, model)


def test_every_setting_is_evaluated_with_metrics_cost_and_report(cfg, tmp_path):
    torch.manual_seed(0)
    model = build_model(cfg)
    adadet.set_depth(model, "TFFF")
    results = _evaluate(cfg, model, tmp_path)
    assert list(results) == ["FFFF", "TTFF", "TTTT"]
    assert adadet.get_depth(model) == "TFFF"  # evaluation restores the model's depth
    num_val_images = len(DatasetCatalog.get(cfg.DATASETS.TEST[0]))
    for per_depth in results.values():
        for task in ("bbox", "segm"):
            assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(per_depth[task])
        assert per_depth["cost"]["images"] == num_val_images and per_depth["cost"]["latency_ms"] > 0
    gflops = [results[d]["cost"]["gflops"] for d in results]
    params = [results[d]["cost"]["params_m"] for d in results]
    assert gflops[0] > gflops[1] > gflops[2] and params[0] > params[1] > params[2]

    report = json.loads((tmp_path / "depth_eval.json").read_text())
    assert report["dataset"] == "adadet_test_tiny_val" and report["device"].startswith("cpu")
    assert [row["depth"] for row in report["depths"]] == list(results)
    for row in report["depths"]:
        assert row["box_AP"] == results[row["depth"]]["bbox"]["AP"]
        assert row["mask_AP75"] == results[row["depth"]]["segm"]["AP75"]
        assert row["gflops"] == results[row["depth"]]["cost"]["gflops"]
        # the detector's GFLOPs per part, summing to the whole
        parts = {k: v for k, v in row.items() if k.startswith("gflops_in_")}
        assert {"gflops_in_backbone", "gflops_in_fpn", "gflops_in_rpn", "gflops_in_mask_head"} <= set(parts)
        assert sum(parts.values()) == pytest.approx(row["gflops"], rel=1e-9)
    csv_lines = (tmp_path / "depth_eval.csv").read_text().splitlines()
    assert csv_lines[0].startswith("depth,box_AP") and len(csv_lines) == 4
    assert (tmp_path / "depth_eval_pareto.png").stat().st_size > 10_000


def test_a_reloaded_checkpoint_gives_the_same_detections_at_every_depth(cfg, tmp_path):
    torch.manual_seed(1)
    model = build_model(cfg)
    (tmp_path / "train").mkdir()
    ADNCheckpointer(model, save_dir=str(tmp_path / "train")).save("model_final")
    first = _evaluate(cfg, model, tmp_path / "first")
    reloaded = build_model(cfg)
    ADNCheckpointer(reloaded).load(str(tmp_path / "train" / "model_final.pth"))
    second = _evaluate(cfg, reloaded, tmp_path / "second")
    for depth in first:
        detections = [
            json.loads((tmp_path / run / "inference" / depth / "coco_instances_results.json").read_text())
            for run in ("first", "second")
        ]
        assert detections[0] and detections[0] == detections[1]
        assert json.dumps(first[depth]["bbox"]) == json.dumps(second[depth]["bbox"])  # NaN-safe
        assert first[depth]["cost"]["gflops"] == second[depth]["cost"]["gflops"]


def test_loader_and_evaluator_are_built_once_for_all_settings(cfg, tmp_path):
    built = []

    class CountingTrainer(ADNTrainer):
        @classmethod
        def build_test_loader(cls, cfg, dataset_name):
            built.append("loader")
            return super().build_test_loader(cfg, dataset_name)

        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            built.append("evaluator")
            return super().build_evaluator(cfg, dataset_name, output_folder)

    two = cfg.clone()
    two.TEST.ADN.DEPTHS = ["FFFF", "TTTT"]
    two.OUTPUT_DIR = str(tmp_path)
    torch.manual_seed(0)
    results = CountingTrainer.test(two, build_model(two))
    assert built == ["loader", "evaluator"]  # the cost image comes from the same loader
    for depth in results:  # each setting still writes into its own folder
        assert (tmp_path / "inference" / depth / "coco_instances_results.json").stat().st_size > 0


def test_invalid_depth_list_is_refused_before_evaluating(cfg, tmp_path):
    bad = cfg.clone()
    bad.TEST.ADN.DEPTHS = ["FFFF", "super"]
    with pytest.raises(ValueError, match="more than once"):
        _evaluate(bad, build_model(cfg), tmp_path)


def test_vit_adn_trains_with_self_distillation_and_is_evaluated_per_depth(cfg, tmp_path):
    """The trainer's step, the per-depth evaluation and the cost counting are backbone-agnostic."""
    from detectron2.data import build_detection_train_loader
    from detectron2.utils.events import EventStorage

    from adadet.engine import SelfDistillationModel
    from adn_testing import TINY_VIT_ADN_KEYS, set_cfg_keys

    vit_cfg = set_cfg_keys(cfg.clone(), **TINY_VIT_ADN_KEYS, MODEL__FPN__OUT_CHANNELS=32)
    torch.manual_seed(0)
    detector = build_model(vit_cfg)
    training = SelfDistillationModel.from_config(vit_cfg, detector).train()
    batch = next(iter(build_detection_train_loader(vit_cfg)))
    skip_norm = detector.backbone.bottom_up.blocks[0].norm1.norm_skip.weight
    before = skip_norm.detach().clone()
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.1)
    with EventStorage(0):
        losses = training(batch, iteration=0)
    total = sum(losses.values())
    assert losses["loss_kd"] > 0 and torch.isfinite(total)
    total.backward()
    optimizer.step()
    assert not torch.equal(before, skip_norm)  # the sub-net pass trains the skip LayerNorms

    results = _evaluate(vit_cfg.clone(), detector, tmp_path)
    assert "bbox" in results["TTTT"] and "segm" in results["TTTT"]
    assert results["TTTT"]["cost"]["gflops"] < results["TTFF"]["cost"]["gflops"] < results["FFFF"]["cost"]["gflops"]
