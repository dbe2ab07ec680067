"""``add_adn_config``: the ``MODEL.ADN`` and ``TEST.ADN`` config keys of adadet."""
from detectron2.config import CfgNode as CN


def add_adn_config(cfg) -> None:
    """Add adadet's keys to a Detectron2 config (call after ``get_cfg()``, before merging)."""
    _C = cfg
    _C.MODEL.ADN = CN()
    # Depth setting the model runs at when built, and for inference and plain evaluation:
    # one letter per stage (res2..res5), "T" = skip that stage's skippable blocks, "F" = run
    # them. "FFFF" (alias "super") is the full super-net, "TTTT" (alias "base") the base-net.
    _C.MODEL.ADN.DEPTH = "FFFF"
    # Mandatory blocks per stage. Empty: the paper's rule min(L-1, (L+1)//2) for a stage of
    # L blocks (R-50 [3,4,6,3] keeps [2,2,3,2] and may skip [1,2,3,1]).
    _C.MODEL.ADN.NUM_MANDATORY_BLOCKS = []
    # When MODEL.WEIGHTS has no skip norms (an ordinary ImageNet ResNet, torchvision or
    # Detectron2/MSRA layout): "copy" starts every skip norm as a copy of its main norm
    # (logged), "error" refuses such a checkpoint.
    _C.MODEL.ADN.SKIP_NORM_INIT = "copy"

    # Self-distillation (the paper's training): each iteration runs the super-net on the
    # task loss and a sub-net taught to match the super-net's features, then one step.
    _C.MODEL.ADN.DISTILL = CN()
    # Train with self-distillation; False trains the super-net alone (a plain detector).
    _C.MODEL.ADN.DISTILL.ENABLED = True
    # Student sub-nets. One entry: always that one (the paper: the base-net "TTTT").
    # Several: one is sampled per iteration.
    _C.MODEL.ADN.DISTILL.SUBNETS = ["TTTT"]
    # loss = ALPHA * L_super + (1 - ALPHA) * (SUB_TASK_WEIGHT * L_sub_task + KD_WEIGHT * L_kd)
    _C.MODEL.ADN.DISTILL.ALPHA = 0.5
    _C.MODEL.ADN.DISTILL.SUB_TASK_WEIGHT = 1.0
    _C.MODEL.ADN.DISTILL.KD_WEIGHT = 1.0
    # Temperature of the channel softmax in the feature KL divergence.
    _C.MODEL.ADN.DISTILL.TEMPERATURE = 1.0
    # Backbone output features (FPN levels) distilled from the super-net to the sub-net.
    _C.MODEL.ADN.DISTILL.FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    # Weight of the KL divergence between the RPN/ROI classification logits of the sub-net
    # and of the super-net (0 disables it).
    _C.MODEL.ADN.DISTILL.LOGITS_WEIGHT = 0.0

    _C.TEST.ADN = CN()
    # Depth settings evaluated at TEST.EVAL_PERIOD, at the end of training and with
    # --eval-only: a list of settings, or ["all"] for every one of the 2^stages.
    _C.TEST.ADN.DEPTHS = ["FFFF", "TFFF", "TTFF", "TTTF", "TTTT"]
