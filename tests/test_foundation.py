"""The installed environment: adadet imports, detectron2 trains and infers on CPU, and the
ops that need detectron2's compiled library fail clearly when it is absent."""
import subprocess
import sys

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import adadet
from adadet.env import collect_env_info, detectron2_mode
from adn_testing import detectron2_zoo_config

COMPAT = detectron2_mode() == "compat"
needs_compat = pytest.mark.skipif(not COMPAT, reason="detectron2 has its compiled ops here")


def test_adadet_registers_its_backbones():
    from detectron2.modeling import BACKBONE_REGISTRY

    for name in (
        "build_resnet_adn_backbone",
        "build_resnet_adn_fpn_backbone",
        "build_retinanet_resnet_adn_fpn_backbone",
    ):
        assert BACKBONE_REGISTRY.get(name) is getattr(adadet, name)


def test_environment_report_names_detectron2_torch_and_device():
    result = subprocess.run(
        [sys.executable, "-m", "adadet.env"], capture_output=True, text=True, check=True
    )
    report = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    rows = dict(collect_env_info())
    assert torch.__version__ in result.stdout
    assert detectron2_mode() in ("compat", "compiled")
    expected = "compatibility mode" if COMPAT else "compiled ops"
    assert expected in rows["detectron2 ops"]
    assert "cpu" in rows["device"] or "cuda" in rows["device"]
    assert report["torchvision"].strip() == rows["torchvision"]


def _stock_mask_rcnn_cfg():
    """Detectron2's own Mask R-CNN R50-FPN config, from its installed model zoo."""
    cfg = get_cfg()
    cfg.merge_from_file(detectron2_zoo_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.NORM = "BN"  # random init: frozen statistics of 0/1 would blow up
    return cfg


def test_stock_mask_rcnn_trains_a_step_and_infers_on_cpu():
    torch.manual_seed(0)
    model = build_model(_stock_mask_rcnn_cfg())
    image = torch.randint(0, 256, (3, 128, 160)).float()
    instances = Instances((128, 160))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 90.0, 100.0]]))
    instances.gt_classes = torch.tensor([3])
    instances.gt_masks = PolygonMasks([[[10, 20, 90, 20, 90, 100, 10, 100]]])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    with EventStorage(0):
        losses = model([{"image": image, "instances": instances}])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()
    assert not torch.equal(before, model.roi_heads.box_predictor.cls_score.weight)
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 128, "width": 160}])
    assert output["instances"].image_size == (128, 160)
    assert output["instances"].has("pred_masks")


@needs_compat
def test_compat_standin_is_detectron2_C():
    import detectron2._C as C

    assert C.IS_ADADET_COMPAT_STANDIN
    assert "no compiled ops" in C.get_compiler_version()


def _rotated_nms():
    from detectron2.layers import nms_rotated

    nms_rotated(torch.rand(3, 5), torch.rand(3), 0.5)


def _rotated_iou():
    from detectron2.structures import RotatedBoxes, pairwise_iou_rotated

    pairwise_iou_rotated(RotatedBoxes(torch.rand(2, 5)), RotatedBoxes(torch.rand(2, 5)))


def _roi_align_rotated():
    from detectron2.layers import ROIAlignRotated

    ROIAlignRotated((7, 7), spatial_scale=1.0, sampling_ratio=0)(torch.rand(1, 4, 8, 8), torch.rand(2, 6))


def _deform_conv_kernel():
    # On CPU detectron2 itself refuses (modulated) deformable conv before reaching its
    # kernels; on a GPU the call reaches detectron2._C like this.
    import detectron2._C as C

    C.modulated_deform_conv_forward(torch.rand(1, 4, 8, 8))


def _fast_coco_eval():
    from detectron2.evaluation.fast_eval_api import COCOeval_opt
    from pycocotools.coco import COCO

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 8, 20, 20],
                         "area": 400, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    gt.createIndex()
    dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [9, 9, 20, 20], "score": 0.9}])
    COCOeval_opt(gt, dt, "bbox").evaluate()


@needs_compat
@pytest.mark.parametrize(
    "call, feature",
    [
        (_rotated_nms, "rotated boxes"),
        (_rotated_iou, "rotated boxes"),
        (_roi_align_rotated, "ROIAlignRotated"),
        (_deform_conv_kernel, "modulated deformable convolution"),
        (_fast_coco_eval, "C++ COCOeval"),
    ],
)
def test_ops_needing_compiled_library_fail_clearly(call, feature):
    with pytest.raises(RuntimeError, match="needs detectron2's compiled library") as error:
        call()
    assert feature in str(error.value)
    assert "Build detectron2 from source" in str(error.value)
    if feature == "C++ COCOeval":
        assert "use_fast_impl=False" in str(error.value)
