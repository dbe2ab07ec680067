"""Predictions drawn with Detectron2's ``Visualizer``, and several depth settings of one
image side by side, each panel captioned with its depth, detection count and latency."""
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.utils.visualizer import ColorMode, Visualizer

from .predictor import AdaptiveDepthPredictor, DepthPrediction

#: White columns between the panels of a side-by-side image.
PANEL_GAP = 8
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_prediction(image_rgb: np.ndarray, prediction: DepthPrediction, metadata) -> np.ndarray:
    """The image (H, W, 3 RGB) with the predicted boxes, classes and masks drawn on it."""
    visualizer = Visualizer(image_rgb, metadata, instance_mode=ColorMode.IMAGE)
    return visualizer.draw_instance_predictions(prediction.instances).get_image()


def caption_lines(prediction: DepthPrediction) -> List[str]:
    count = len(prediction.instances)
    return [
        f"depth {prediction.depth}",
        f"{count} detection{'s' if count != 1 else ''}, {prediction.latency_ms:.1f} ms",
    ]


def _fitting_scale(lines: Sequence[str], width: int) -> Tuple[float, int]:
    """Font scale (and thickness) at which every line fits ``width`` with a margin."""
    scale = max(0.35, min(1.0, width / 500))
    while scale > 0.25:
        widest = max(cv2.getTextSize(line, _FONT, scale, 1)[0][0] for line in lines)
        if widest <= width - 8:
            break
        scale -= 0.05
    return scale, 1 if scale < 0.8 else 2


def add_caption(panel_rgb: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The panel with a white band above it holding ``lines`` (same width, taller)."""
    width = panel_rgb.shape[1]
    scale, thickness = _fitting_scale(lines, width)
    line_height = cv2.getTextSize("Ag", _FONT, scale, thickness)[0][1] + int(10 * scale) + 4
    band = np.full((line_height * len(lines) + 6, width, 3), 255, dtype=np.uint8)
    for index, line in enumerate(lines):
        baseline_y = 4 + line_height * (index + 1) - int(5 * scale) - 2
        cv2.putText(band, line, (4, baseline_y), _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)
    return np.concatenate([band, panel_rgb], axis=0)


def side_by_side(panels: Sequence[np.ndarray], gap: int = PANEL_GAP) -> np.ndarray:
    """Panels left to right, ``gap`` white columns apart, bottom-padded to one height.
    Width: sum of the panel widths + gap x (panels - 1)."""
    height = max(p.shape[0] for p in panels)
    gap_columns = np.full((height, gap, 3), 255, dtype=np.uint8)
    columns = []
    for panel in panels:
        padded = np.pad(panel, ((0, height - panel.shape[0]), (0, 0), (0, 0)), constant_values=255)
        columns += [gap_columns, padded]
    return np.concatenate(columns[1:], axis=1)


def compare_depths(
    predictor: AdaptiveDepthPredictor, image_bgr: np.ndarray, depths: Sequence[str]
) -> Tuple[np.ndarray, List[DepthPrediction]]:
    """One RGB image with a captioned panel per depth setting, and the predictions."""
    image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    predictions = [predictor(image_bgr, depth=depth) for depth in depths]
    panels = [
        add_caption(draw_prediction(image_rgb, p, predictor.metadata), caption_lines(p))
        for p in predictions
    ]
    return side_by_side(panels), predictions
