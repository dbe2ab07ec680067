"""Mask R-CNN and RetinaNet with a ResNet-ADN backbone: a training step, and inference at
every one of the 16 depth settings of the same weights."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import adadet
from adn_testing import make_project_cfg, synthetic_batch


@pytest.mark.parametrize(
    "config, expected_losses",
    [
        ("mask_rcnn_ada_r50.yaml", {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}),
        ("retinanet_ada_r50.yaml", {"loss_cls", "loss_box_reg"}),
    ],
)
def test_trains_a_step_and_infers_at_every_depth(config, expected_losses):
    torch.manual_seed(0)
    cfg = make_project_cfg(
        config,
        MODEL__RESNETS__NORM="BN",  # SyncBN in the COCO configs; BN on one CPU process
        MODEL__ROI_HEADS__NUM_CLASSES=3,
        MODEL__RETINANET__NUM_CLASSES=3,
    )
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = synthetic_batch(num_images=2, height=128, width=160)
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) == expected_losses
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    head = model.roi_heads if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" else model.head
    head_weight = next(head.parameters())
    before = head_weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, head_weight)

    model.eval()
    scores = {}
    with torch.no_grad():
        for setting in adadet.all_depths():
            adadet.set_depth(model, setting)
            (output,) = model([{"image": batch[0]["image"], "height": 128, "width": 160}])
            instances = output["instances"]
            assert instances.image_size == (128, 160)
            if cfg.MODEL.MASK_ON:
                assert instances.has("pred_masks")
            features = model.backbone(model.preprocess_image([batch[0]]).tensor)
            scores[setting] = float(sum(f.abs().mean() for f in features.values()))
    assert len(set(scores.values())) == 16  # 16 different sub-networks, one set of weights
