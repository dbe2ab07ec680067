"""Export at a fixed depth: the graph holds only that setting's blocks, round-trips through
torch.jit.load and reproduces the eager model; the tool and the standalone runner."""
import json
import os
import subprocess
import sys

import pytest
import torch

import adadet
from adadet.deploy.export import (
    METADATA_NAME,
    TOLERANCES,
    ExportError,
    compare_outputs,
    export_onnx,
    export_torchscript,
    script_model,
)
from adadet.deploy.predictor import AdaptiveDepthPredictor, read_model_input
from adadet.utils.tracing import DetectorTracingAdapter
from adn_testing import ROOT, load_tool


@pytest.fixture(scope="module")
def inputs(tiny_cfg, shapes_images):
    """The model inputs of two real images of different sizes."""
    return [read_model_input(path, tiny_cfg) for path in shapes_images]


@pytest.fixture(scope="module")
def exports(tiny_model, inputs, tmp_path_factory):
    """TorchScript exports at TTTT (checked on both images) and at FFFF (not checked)."""
    directory = tmp_path_factory.mktemp("exports")
    return {
        "TTTT": export_torchscript(tiny_model, "TTTT", inputs[0], str(directory / "TTTT.ts"),
                                   {"depth": "TTTT"}, check_images=inputs[1:]),
        # For the layer count and file size only.
        "FFFF": export_torchscript(tiny_model, "FFFF", inputs[0], str(directory / "FFFF.ts"),
                                   {"depth": "FFFF"}, verify=False),
    }


def test_graph_holds_only_the_blocks_of_its_depth(exports, tiny_model):
    base, full = exports["TTTT"], exports["FFFF"]
    assert base.graph_layers == base.eager_layer_calls and base.graph_matches_depth
    assert full.graph_layers == full.eager_layer_calls
    # R-18 ADN: one skippable BasicBlock (2 convs) per stage, so TTTT runs 8 convs fewer.
    assert full.graph_layers["conv"] - base.graph_layers["conv"] == 8
    assert full.graph_layers["linear"] == base.graph_layers["linear"] == 4  # the box head
    # Frozen graphs keep only the weights they read: the skipped blocks' are not stored.
    assert base.file_bytes < 0.8 * full.file_bytes
    assert adadet.get_depth(tiny_model) == "FFFF"  # the export restored the model's depth


def test_a_whole_detector_setting_exports_only_its_neck_and_head_blocks(tiny_cfg, inputs, tmp_path):
    """Where the neck and heads adapt, the exported graph of a setting holds only the
    refinements it runs: the FPN's skipped output convs (P2-P5) and the RPN head's conv (run
    on each of P2-P6) are not in it."""
    from adadet.deploy.predictor import build_inference_model, setup_deploy_cfg

    cfg = setup_deploy_cfg(
        str(ROOT / "configs" / "mask_rcnn_ada_r18_textures_whole_cpu.yaml"),
        ["MODEL.ROI_HEADS.NUM_CLASSES", "3", "DATASETS.TEST", str(tuple(tiny_cfg.DATASETS.TEST))],
    )
    torch.manual_seed(0)
    model = build_inference_model(cfg)
    reports = {
        depth: export_torchscript(model, depth, inputs[0], str(tmp_path / f"{depth}.ts"),
                                  verify=False)
        for depth in ("TTTT", "TTTTTTF")
    }
    for report in reports.values():
        assert report.graph_layers == report.eager_layer_calls and report.graph_matches_depth
    # with the backbone's letters alone the neck runs in full: 4 FPN + 5 RPN conv calls more
    convs = {depth: r.graph_layers["conv"] for depth, r in reports.items()}
    assert convs["TTTT"] - convs["TTTTTTF"] == 4 + 5


def test_checks_pass_on_images_with_other_sizes_and_detection_counts(exports):
    checks = exports["TTTT"].checks
    assert exports["TTTT"].ok and all(check["ok"] for check in checks)
    assert checks[0]["input_size"] != checks[1]["input_size"]
    # The traced graph is not tied to the tracing image's number of detections.
    assert checks[0]["detections"]["eager"] != checks[1]["detections"]["eager"]


def test_round_trip_matches_the_eager_model(exports, tiny_model, inputs):
    loaded = torch.jit.load(exports["TTTT"].path)
    adapter = DetectorTracingAdapter(tiny_model)
    image = inputs[1]
    with torch.no_grad(), adadet.using_depth(tiny_model, "TTTT"):
        expected = adapter(image)
    with torch.no_grad():
        actual = loaded(image)
    assert expected[0].shape[0] > 0
    result = compare_outputs(expected, actual, adapter.output_names, TOLERANCES["torchscript"])
    assert result["ok"], result
    extra = {METADATA_NAME: ""}  # the metadata inside the file
    torch.jit.load(exports["TTTT"].path, _extra_files=extra)
    assert json.loads(extra[METADATA_NAME])["requires_ops"] == ["torchvision::nms", "torchvision::roi_align"]


def test_scripting_is_refused_with_the_reason(tiny_model):
    with pytest.raises(ExportError, match="--export-method tracing"):
        script_model(tiny_model)


def _onnx_installed():
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_onnx_installed(), reason="checks the message shown without the onnx package")
def test_onnx_without_the_onnx_package_says_what_to_install(tiny_model, inputs, tmp_path):
    with pytest.raises(ExportError, match="pip install onnx"):
        export_onnx(tiny_model, "TTTT", inputs[0], str(tmp_path / "model.onnx"))


def test_onnx_export_of_the_whole_detector(tiny_model, inputs, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    report = export_onnx(tiny_model, "TTTT", inputs[0], str(tmp_path / "model.onnx"),
                         check_images=inputs[1:], exporters=("torchscript",))
    assert report.part == "model" and report.ok, report.to_dict()
    assert report.graph_layers == {"conv": report.eager_layer_calls["conv"]}
    assert len(report.checks) == 2


def test_export_tool_and_standalone_runner(tiny_cfg, tiny_model, tiny_weights, shapes_images, tmp_path, capsys):
    output = tmp_path / "export_TTTT"
    code = load_tool("export_model").main([
        "--config-file", str(ROOT / "tests" / "deploy" / "tiny_deploy.yaml"), "--depth", "TTTT",
        "--sample-image", shapes_images[0], "--output", str(output), "MODEL.WEIGHTS", tiny_weights,
    ])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "graph: 38 conv + 4 linear nodes, matches the 38 conv + 4 linear layer calls" in printed
    assert "the super-net FFFF calls 46 conv + 4 linear: 8 layers of skipped blocks" in printed
    info = json.loads((output / "export_info.json").read_text())
    assert info["ok"] and info["depth"] == "TTTT" and len(info["checks"]) == 2

    # The runner needs neither adadet nor detectron2: importing either fails in its process.
    detections_file = tmp_path / "detections.json"
    blocker = (
        "import runpy, sys; sys.modules['adadet'] = None; sys.modules['detectron2'] = None; "
        f"sys.argv = ['run_exported.py'] + {[str(output / 'model.ts'), '--input', shapes_images[1], '--json', str(detections_file), '--warmup', '0']!r}; "
        f"runpy.run_path({str(ROOT / 'tools' / 'run_exported.py')!r}, run_name='__main__')"
    )
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    run = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "depth TTTT" in run.stdout
    (result,) = json.loads(detections_file.read_text())["results"]

    # Same detections as the eager model at TTTT in Detectron2's full pipeline (original size).
    from detectron2.data.detection_utils import read_image

    predictor = AdaptiveDepthPredictor(tiny_cfg, model=tiny_model, warmup=0)
    expected = predictor(read_image(shapes_images[1], format="BGR"), depth="TTTT").instances
    found = result["detections"]
    assert len(found) == len(expected) > 0
    boxes = torch.tensor([d["box"] for d in found])
    assert torch.allclose(boxes, expected.pred_boxes.tensor, atol=0.01)  # the JSON keeps 2 decimals
    assert [d["class_id"] for d in found] == expected.pred_classes.tolist()
    mask_pixels = torch.tensor([d["mask_pixels"] for d in found])
    assert (mask_pixels - expected.pred_masks.flatten(1).sum(1)).abs().max() <= 2


def _exits_2(capsys, call, message):
    with pytest.raises(SystemExit) as raised:
        call()
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_runner_refuses_bad_model_files_and_inputs(shapes_images, tmp_path, capsys):
    runner = load_tool("run_exported")
    image = shapes_images[0]
    not_a_model = tmp_path / "model.ts"
    not_a_model.write_text("not a model")
    _exits_2(capsys, lambda: runner.main([str(not_a_model), "--input", image]),
             f"model {not_a_model} is not a TorchScript file (")
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    _exits_2(capsys, lambda: runner.main([str(empty), "--input", image]),
             f"model {empty} is empty (0 bytes): give the model.ts or model.onnx written by")
    _exits_2(capsys, lambda: runner.main([str(tmp_path), "--input", image]),
             f"model {tmp_path} is a directory, not a file")
    _exits_2(capsys, lambda: runner.main([str(tmp_path / "absent.ts"), "--input", image]),
             "absent.ts does not exist")
    empty_image = tmp_path / "empty.jpg"
    empty_image.write_bytes(b"")
    for bad, message in ((tmp_path / "absent.jpg", "does not exist"), (tmp_path, "is a directory"),
                         (empty_image, "is empty (0 bytes)"), (not_a_model, "is not an image Pillow can read")):
        # the inputs are checked first: the (bad) model file is not even opened
        _exits_2(capsys, lambda: runner.main([str(not_a_model), "--input", image, str(bad)]),
                 f"--input {bad} {message}")


def test_export_tool_checks_output_and_sample_image_before_building(shapes_images, tmp_path, capsys, monkeypatch):
    tool = load_tool("export_model")

    def refuse(cfg):
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr(tool, "build_inference_model", refuse)
    config = ["--config-file", str(ROOT / "tests" / "deploy" / "tiny_deploy.yaml")]
    _exits_2(capsys, lambda: tool.main(config + ["--output", "/proc/export"]),
             "--output /proc/export cannot be written to (")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _exits_2(capsys, lambda: tool.main(config + ["--output", str(a_file)]),
             f"--output {a_file} is a file: give a directory")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    output = str(tmp_path / "out")
    for bad, message in ((tmp_path / "absent.jpg", "does not exist"), (empty, "is empty (0 bytes)"),
                         (a_file, "is not an image")):
        _exits_2(capsys, lambda: tool.main(config + ["--sample-image", str(bad), "--output", output]),
                 f"--sample-image {bad} {message}")
