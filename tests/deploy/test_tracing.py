"""DetectorTracingAdapter's two views: raw predictions at the input size (export) and the
whole model with Detectron2's postprocessing (FLOP counting)."""
import torch

from adadet.deploy.predictor import read_model_input
from adadet.utils.tracing import DetectorTracingAdapter


def test_raw_predictions_or_the_whole_model_at_the_original_size(tiny_cfg, tiny_model, shapes_images):
    image = read_model_input(shapes_images[0], tiny_cfg)
    height, width = 2 * image.shape[1], 2 * image.shape[2]
    with torch.no_grad():
        raw = DetectorTracingAdapter(tiny_model)(image)
        whole = DetectorTracingAdapter(tiny_model, extra_inputs={"height": height, "width": width})(image)
        expected = tiny_model([{"image": image, "height": height, "width": width}])[0]["instances"]
    mask_size = tiny_cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION * 2
    assert raw[3].shape[1:] == (1, mask_size, mask_size)  # per-box probabilities, not pasted
    assert whole[3].shape[1:] == (height, width) and whole[3].dtype == torch.bool
    assert torch.equal(whole[0], expected.pred_boxes.tensor)
    assert torch.equal(whole[2], expected.pred_classes)
    # the same detections, the boxes at twice the input size
    assert torch.allclose(whole[0], raw[0] * 2, atol=1e-3)
