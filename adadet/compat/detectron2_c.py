"""adadet's stand-in for ``detectron2._C``, detectron2's compiled operator library.

detectron2 is not published on the package index with its compiled ops. When no
source build of detectron2 is present, adadet's set-up (``dev/install_detectron2.py``)
installs detectron2 v0.6's Python sources and places this file as ``detectron2/_C.py``.
Everything adadet needs (Mask R-CNN, RetinaNet, FPN, COCO evaluation through
pycocotools) runs without compiled ops; the few ops below need them and raise
:class:`MissingCompiledOpError` naming the op and the fix.

This file must stay self-contained (torch only): detectron2 imports it while its own
package is still initialising.
"""
import torch

#: Read by ``adadet.env`` to tell a compatibility install from a real build.
IS_ADADET_COMPAT_STANDIN = True

# op name -> the feature of detectron2 that needs it
_FEATURE_OF_OP = {
    "deform_conv_forward": "deformable convolution (DeformConv)",
    "deform_conv_backward_input": "deformable convolution (DeformConv)",
    "deform_conv_backward_filter": "deformable convolution (DeformConv)",
    "modulated_deform_conv_forward": "modulated deformable convolution (ModulatedDeformConv)",
    "modulated_deform_conv_backward": "modulated deformable convolution (ModulatedDeformConv)",
    "box_iou_rotated": "rotated boxes (pairwise_iou_rotated)",
    "nms_rotated": "rotated boxes (nms_rotated / batched_nms_rotated)",
    "roi_align_rotated_forward": "ROIAlignRotated",
    "roi_align_rotated_backward": "ROIAlignRotated",
    "InstanceAnnotation": "the C++ COCOeval (COCOeval_opt)",
    "COCOevalEvaluateImages": "the C++ COCOeval (COCOeval_opt)",
    "COCOevalAccumulate": "the C++ COCOeval (COCOeval_opt)",
}


class MissingCompiledOpError(RuntimeError):
    """A detectron2 op was called that needs detectron2's compiled library."""


def _missing(op_name: str) -> MissingCompiledOpError:
    feature = _FEATURE_OF_OP.get(op_name, "this feature")
    hint = (
        " For COCO evaluation pass use_fast_impl=False to COCOEvaluator (the pycocotools"
        " path; adadet's evaluators do this for you)."
        if "COCOeval" in feature
        else ""
    )
    return MissingCompiledOpError(
        f"detectron2 op '{op_name}' ({feature}) needs detectron2's compiled library, "
        "which this installation does not have: adadet installed detectron2 v0.6's Python "
        "sources in compatibility mode (detectron2._C is adadet's stand-in). "
        "Build detectron2 from source (pip install --no-build-isolation <detectron2 source "
        f"tree>) to use it.{hint}"
    )


def get_compiler_version() -> str:
    return "none (adadet compatibility stand-in: no compiled ops)"


def get_cuda_version() -> str:
    return "none (adadet compatibility stand-in: no compiled ops)"


def has_cuda() -> bool:
    return False


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    raise _missing(name)


def _register_rotated_torch_ops() -> None:
    """Some versions call rotated ops through ``torch.ops.detectron2``; make them fail clearly."""
    try:
        library = torch.library.Library("detectron2", "DEF")
    except RuntimeError:  # the namespace exists: a real build or an earlier import
        return
    schemas = {
        "nms_rotated": "nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor",
        "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
        "roi_align_rotated_forward": (
            "roi_align_rotated_forward(Tensor input, Tensor rois, float spatial_scale, "
            "int pooled_height, int pooled_width, int sampling_ratio) -> Tensor"
        ),
    }
    for op_name, schema in schemas.items():
        library.define(schema)

        def fail(*args, _op_name=op_name, **kwargs):
            raise _missing(_op_name)

        library.impl(op_name, fail, "CompositeExplicitAutograd")
    globals()["_torch_library"] = library  # keep the registrations alive


_register_rotated_torch_ops()
