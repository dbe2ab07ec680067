"""tools/analyze_depths.py: the per-depth FLOPs/parameter table of a config."""
import json

import pytest

from adn_testing import ROOT, load_tool


def test_json_rows_for_backbone_and_detector(capsys):
    load_tool("analyze_depths").main([
        "--config-file", str(ROOT / "configs" / "mask_rcnn_ada_r50.yaml"),
        "--depths", "FFFF", "base", "--input-size", "128", "160", "--json",
        "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "MODEL.RESNETS.NORM", "BN", "MODEL.WEIGHTS", "",
    ])
    rows = json.loads(capsys.readouterr().out)
    assert [row["depth"] for row in rows] == ["FFFF", "TTTT"]
    full, base = rows
    assert base["flops"] < full["flops"] and base["params"] < full["params"]
    assert base["detector_flops"] < full["detector_flops"]
    assert full["detector_input"] == [128, 160]
    # the backbone is part of the detector
    assert full["detector_flops"] > full["flops"] * (128 * 160) / (224 * 224)


def test_table_output_and_bad_depth(capsys):
    tool = load_tool("analyze_depths")
    args = ["--config-file", str(ROOT / "configs" / "mask_rcnn_ada_r50.yaml"), "--backbone-only",
            "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
            "MODEL.RESNETS.NORM", "BN", "MODEL.WEIGHTS", ""]
    tool.main(args[:2] + ["--depths", "TTFF"] + args[2:])
    table = capsys.readouterr().out
    assert "| depth" in table and "TTFF" in table and "backbone GFLOPs (224x224)" in table
    for bad in ("TTF", "TTFFT"):  # the wrong number of letters for this model
        with pytest.raises(SystemExit) as raised:
            tool.main(args[:2] + ["--depths", bad] + args[2:])
        err = capsys.readouterr().err
        assert raised.value.code == 2 and f"Invalid depth setting {bad!r}" in err, err
    with pytest.raises(SystemExit) as raised:  # not letters: refused while the arguments are read
        tool.parse_args(args[:2] + ["--depths", "TXFF"])
    assert raised.value.code == 2 and "Invalid depth setting 'TXFF'" in capsys.readouterr().err


def _refused(capsys, argv):
    """analyze_depths refuses argv when it reads the arguments (exit 2), before any model."""
    with pytest.raises(SystemExit) as raised:
        load_tool("analyze_depths").parse_args(["--config-file", "unused.yaml"] + argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("size", [["0", "0"], ["-5", "100"], ["800", "x"]])
def test_input_size_must_be_positive_pixels(capsys, size):
    err = _refused(capsys, ["--input-size"] + size)
    bad = next(v for v in size if not v.isdigit() or int(v) <= 0)
    assert f"{bad!r} is not a positive number of pixels: give the detector input as H W" in err


def test_overrides_after_depths_are_not_taken_for_depths(capsys):
    # '--depths FFFF TTTT KEY VALUE' read KEY and VALUE as depth settings.
    err = _refused(capsys, ["--depths", "FFFF", "TTTT", "MODEL.WEIGHTS", "m.pth"])
    assert "Invalid depth setting 'MODEL.WEIGHTS'" in err
    assert "put the overrides after --opts, which ends the list of settings: ... --opts MODEL.WEIGHTS VALUE" in err
    tool = load_tool("analyze_depths")
    for argv in (["--depths", "FFFF", "base", "--opts", "MODEL.WEIGHTS", "m.pth"],
                 ["--depths", "FFFF", "base", "--", "MODEL.WEIGHTS", "m.pth"],
                 ["--json", "MODEL.WEIGHTS", "m.pth"]):
        args = tool.parse_args(["--config-file", "c.yaml"] + argv)
        assert args.opts == ["MODEL.WEIGHTS", "m.pth"], argv
    assert tool.parse_args(["--config-file", "c.yaml", "--depths", "FFFF", "Base"]).depths == ["FFFF", "base"]
    assert "pairs" in _refused(capsys, ["--opts", "MODEL.WEIGHTS"])


def test_vit_config_table_shows_the_base_net_saving(capsys):
    """ViT-ADN (a small ViT-S-like width): the base-net keeps 8 of 12 blocks, so the
    backbone's FLOPs and parameters fall by about a third from FFFF to TTTT."""
    load_tool("analyze_depths").main([
        "--config-file", str(ROOT / "configs" / "mask_rcnn_ada_vit_b.yaml"),
        "--depths", "FFFF", "TTFF", "TTTT", "--input-size", "64", "64", "--json",
        "MODEL.VIT_ADN.EMBED_DIM", "96", "MODEL.VIT_ADN.NUM_HEADS", "3",
        "MODEL.VIT_ADN.WINDOW_SIZE", "2", "MODEL.VIT_ADN.OUT_CHANNELS", "32",
        "MODEL.WEIGHTS", "",
    ])
    rows = json.loads(capsys.readouterr().out)
    full, half, base = rows
    assert base["flops"] < half["flops"] < full["flops"]
    # (the detector's FLOPs also follow the number of random-weight detections: not compared)
    block_params = (full["params"] - base["params"]) / 4  # 4 skipped blocks
    assert block_params == pytest.approx(12 * 96 * 96 + 13 * 96, rel=0.01)  # qkv, proj, mlp


def test_whole_detector_parts_sum_to_the_detector_and_detections_are_fixed(capsys):
    """The whole-detector R-18 config at 3 settings with --detections: per-part FLOPs sum to
    the detector's; the backbone-only setting saves only in the backbone, the whole base-net
    also in the FPN, the RPN head and the mask head; the box head costs the same (20 boxes
    each time, whatever the random weights keep)."""
    load_tool("analyze_depths").main([
        "--config-file", str(ROOT / "configs" / "mask_rcnn_ada_r18_textures_whole_cpu.yaml"),
        "--depths", "super", "TTTT", "base", "--input-size", "96", "128",
        "--detections", "20", "--json", "MODEL.WEIGHTS", "",
    ])
    rows = json.loads(capsys.readouterr().out)
    assert [row["depth"] for row in rows] == ["FFFFFFF", "TTTTFFF", "TTTTTTT"]
    full, backbone_base, base = (row["detector_parts"] for row in rows)
    assert list(full) == ["backbone", "fpn", "rpn", "box_head", "mask_head", "other"]
    for row in rows:
        assert sum(row["detector_parts"].values()) == row["detector_flops"]
        assert row["detections"] == 20
    assert backbone_base["backbone"] < full["backbone"]
    assert {k: backbone_base[k] for k in ("fpn", "rpn", "mask_head")} == {
        k: full[k] for k in ("fpn", "rpn", "mask_head")}
    for part in ("fpn", "rpn", "mask_head"):
        assert base[part] < backbone_base[part], part
    assert base["box_head"] == backbone_base["box_head"] == full["box_head"]


def test_detections_the_model_cannot_keep_are_an_error(capsys):
    with pytest.raises(SystemExit) as raised:
        load_tool("analyze_depths").main([
            "--config-file", str(ROOT / "configs" / "mask_rcnn_ada_r18_textures_whole_cpu.yaml"),
            "--depths", "super", "--input-size", "64", "64", "--detections", "500",
            "MODEL.WEIGHTS", "", "MODEL.RPN.POST_NMS_TOPK_TEST", "10",
            "MODEL.ROI_HEADS.NUM_CLASSES", "2",
        ])
    message = str(raised.value.code)
    assert "--detections 500: the model kept 20 detections" in message
    assert "MODEL.RPN.POST_NMS_TOPK_TEST" in message
