"""Loading weights into ADN models: official ADN, torchvision and Detectron2/MSRA layouts."""
from detectron2.checkpoint import DetectionCheckpointer


class ADNCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer, aware of ADN's skip norms."""
