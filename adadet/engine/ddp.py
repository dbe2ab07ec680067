"""The arguments of Detectron2's ``create_ddp_model`` for an ADN training module (YACS and
lazy configs alike)."""
from typing import Mapping, Optional

__all__ = ["ddp_kwargs"]


def ddp_kwargs(training_model, device: str, options: Optional[Mapping] = None) -> dict:
    """``options`` (a lazy config's ``train.ddp``; Detectron2's DefaultTrainer passes
    ``broadcast_buffers=False``, the default here) with what ADN needs:

    * ``find_unused_parameters`` whenever a parameter may get no gradient: plain
      super-net training never runs the skip norms, and a student that keeps some stage
      full leaves that stage's skip norms unused
      (:attr:`SelfDistillationModel.uses_every_parameter`);
    * no ``device_ids`` on CPU (gloo takes none).
    """
    kwargs = {"broadcast_buffers": False, **(options or {})}
    if str(device).startswith("cpu"):
        kwargs["device_ids"] = None
    kwargs["find_unused_parameters"] = (
        bool(kwargs.get("find_unused_parameters", False))
        or not training_model.uses_every_parameter
    )
    return kwargs
