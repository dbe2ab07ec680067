"""The feature analysis: how far a stage's output moves when its skippable sub-path is skipped."""
import torch
from detectron2.modeling import build_model

from adadet.evaluation.feature_analysis import format_refinement_table, stage_refinement
from adn_testing import make_project_cfg, synthetic_batch


def test_a_skippable_block_that_computes_identity_does_not_move_its_stage():
    torch.manual_seed(0)
    model = build_model(make_project_cfg("mask_rcnn_ada_r18_embedded_cpu.yaml")).eval()
    # res3's skippable block: its last norm outputs 0, so the block is relu(0 + x) = x
    block = model.backbone.bottom_up.res3.skippable_blocks[0]
    torch.nn.init.zeros_(block.conv2.norm.weight)
    torch.nn.init.zeros_(block.conv2.norm.bias)
    rows = stage_refinement(model, [synthetic_batch(1, seed=s) for s in range(2)])
    by_stage = {r["stage"]: r for r in rows}
    assert [r["skipped_alone"] for r in rows] == ["TFFF", "FTFF", "FFTF", "FFFT"]
    res3 = by_stage["res3"]
    assert res3["relative_l2"] < 1e-5 and res3["kl"] < 1e-6 and res3["cosine"] > 1 - 1e-5
    for name in ("res2", "res4", "res5"):  # random skippable blocks do move their stage
        assert by_stage[name]["relative_l2"] > 1e-2 and by_stage[name]["cosine"] < 0.9999
    # in the base-net res3's input differs too (res2 skips)
    assert res3["base_relative_l2"] > 1e-2
    table = format_refinement_table(rows)
    assert table.count("\n") == 5 and "| res3 | FTFF |" in table
