"""tools/demo.py: one drawn image per input; --compare-depths puts captioned panels side by side."""
import cv2
import numpy as np

from adadet.deploy.visualize import PANEL_GAP, add_caption, side_by_side
from deploy_testing import TINY_CONFIG, load_tool


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
