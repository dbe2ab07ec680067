"""AdaptiveDepthPredictor: Detectron2's DefaultPredictor at a chosen depth, with warm-up and
timed repeats of the model call."""
import numpy as np
import torch
from detectron2.engine import DefaultPredictor

import adadet
from adadet.deploy.predictor import AdaptiveDepthPredictor, to_model_input


def test_predictions_at_a_depth_with_warmup_and_repeats(tiny_cfg, tiny_model, shapes_images):
    from detectron2.data.detection_utils import read_image

    image = read_image(shapes_images[0], format="BGR")
    predictor = AdaptiveDepthPredictor(tiny_cfg, model=tiny_model, repeat=3, warmup=2)
    assert isinstance(predictor, DefaultPredictor)
    calls = []
    hook = tiny_model.register_forward_hook(lambda *args: calls.append(adadet.get_depth(tiny_model)))
    try:
        first = predictor(image, depth="TTTT")
        second = predictor(image)  # the model's own depth; warm-up only once per predictor
    finally:
        hook.remove()
    assert calls == ["TTTT"] * 5 + ["FFFF"] * 3
    assert adadet.get_depth(tiny_model) == "FFFF"  # restored after the call
    assert (first.depth, second.depth) == ("TTTT", "FFFF") and first.latency_ms > 0

    # What the test loader would feed the model: same detections at the original size.
    model_image = image[:, :, ::-1] if tiny_cfg.INPUT.FORMAT == "RGB" else image
    inputs = [{"image": to_model_input(np.ascontiguousarray(model_image), tiny_cfg),
               "height": image.shape[0], "width": image.shape[1]}]
    with torch.no_grad(), adadet.using_depth(tiny_model, "TTTT"):
        expected = tiny_model(inputs)[0]["instances"]
    assert len(first.instances) == len(expected) > 0
    assert first.instances.image_size == image.shape[:2]
    assert torch.allclose(first.instances.pred_boxes.tensor, expected.pred_boxes.tensor, atol=1e-3)
    assert torch.equal(first.instances.pred_classes, expected.pred_classes)
