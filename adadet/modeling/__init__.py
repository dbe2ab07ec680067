from .backbone import *  # noqa: F401,F403  (registers the ADN backbones)
from .roi_heads import FastRCNNConvFCHeadLN, MaskRCNNConvUpsampleHeadLN  # registers the LN heads
from .distill_options import DistillOptions  # noqa: F401
from .skippable_heads import SkippableMaskRCNNConvUpsampleHead, SkippableRPNHead  # noqa: F401
from .skippable_retinanet import SkippableRetinaNet, SkippableRetinaNetHead  # noqa: F401
from .self_distillation import SelfDistillationModel, unwrap_detector  # noqa: F401
