"""tools/demo.py: one drawn image per input; --compare-depths puts captioned panels side by side."""
import cv2
import numpy as np
import pytest

from adadet.deploy.visualize import PANEL_GAP, add_caption, side_by_side
from adn_testing import load_tool
from deploy_testing import TINY_CONFIG


def test_side_by_side_width_and_padding():
    panels = [np.zeros((40, 30, 3), np.uint8), np.zeros((50, 20, 3), np.uint8)]
    combined = side_by_side(panels)
    assert combined.shape == (50, 30 + PANEL_GAP + 20, 3)
    assert (combined[40:, :30] == 255).all()  # the shorter panel is padded with white
    captioned = add_caption(panels[0], ["depth TTTT", "3 detections, 12.5 ms"])
    assert captioned.shape[1] == 30 and captioned.shape[0] > 40
    assert (captioned[-40:] == 0).all()  # the caption band is above the image


def test_demo_writes_single_and_side_by_side_images(shapes_images, tmp_path, tiny_weights):
    demo = load_tool("demo")
    common = ["--config-file", str(TINY_CONFIG), "--confidence-threshold", "0.0", "--warmup", "0"]
    # Few instances: drawing masks dominates the run time otherwise.
    opts = ["--opts", "MODEL.WEIGHTS", tiny_weights, "TEST.DETECTIONS_PER_IMAGE", "5"]
    height, width = cv2.imread(shapes_images[0]).shape[:2]

    single = tmp_path / "single.jpg"
    assert demo.main(common + ["--input", shapes_images[0], "--output", str(single), "--depth", "TTTT"] + opts) == 0
    assert cv2.imread(str(single)).shape[:2] == (height, width)

    compared = tmp_path / "compare"  # a directory: several inputs, given as a glob
    pattern = shapes_images[0].replace("val_000000", "val_00000[0]")
    assert demo.main(common + ["--input", pattern, "--output", str(compared) + "/",
                               "--compare-depths", "FFFF", "TTTT"] + opts) == 0
    drawn = cv2.imread(str(compared / "val_000000.jpg"))
    assert drawn.shape[1] == 2 * width + PANEL_GAP
    assert drawn.shape[0] > height  # caption bands above the panels


def _demo_fails(capsys, argv, message):
    """demo.main(argv) stops with exit status 2 and ``message`` on stderr."""
    with pytest.raises(SystemExit) as raised:
        load_tool("demo").main(["--config-file", str(TINY_CONFIG)] + argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    return err


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the demo gets as far as building a model."""
    import adadet.deploy.predictor as predictor

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr(predictor.AdaptiveDepthPredictor, "__init__", refuse)


def test_demo_refuses_bad_inputs_and_outputs_before_running_the_model(shapes_images, tmp_path, capsys, no_model):
    image = shapes_images[0]
    _demo_fails(capsys, ["--input", image, "--output", str(tmp_path / "out.xyz")],
                f"--output '{tmp_path / 'out.xyz'}' has no image extension OpenCV can write")
    _demo_fails(capsys, ["--input", image, "--output", "/proc/d.jpg"],
                "cannot write to /proc (")
    _demo_fails(capsys, ["--input", str(tmp_path)],
                f"--input {tmp_path} is a directory: give image files, or a pattern such as")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _demo_fails(capsys, ["--input", str(empty)], f"--input {empty} is empty (0 bytes)")
    assert not (tmp_path / "out.xyz").exists()


def test_demo_fails_when_the_drawn_image_cannot_be_saved(shapes_images, tmp_path, capsys, tiny_weights, monkeypatch):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    opts = ["--warmup", "0", "--opts", "MODEL.WEIGHTS", tiny_weights, "TEST.DETECTIONS_PER_IMAGE", "1"]
    _demo_fails(capsys, ["--input", str(not_an_image)] + opts,
                f"--input {not_an_image} could not be read as an image (UnidentifiedImageError")
    monkeypatch.setattr(cv2, "imwrite", lambda *args: False)  # what /proc or a full disk gives
    target = tmp_path / "out.jpg"
    _demo_fails(capsys, ["--input", shapes_images[0], "--output", str(target)] + opts,
                f"could not write {target}: OpenCV's imwrite failed")
