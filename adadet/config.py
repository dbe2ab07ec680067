"""``add_adn_config``: the ``MODEL.ADN``, ``MODEL.VIT_ADN``, ``SOLVER.OPTIMIZER``,
``DATALOADER.EXACT_RESUME`` and ``TEST.ADN`` config keys of adadet; ``merge_config``: file
and opts merged with a clear error for a float key given an integer."""
import os
import re
from typing import Optional, Sequence

import yaml
from detectron2.config import CfgNode as CN

from adadet.depth import DEFAULT_EVAL_CHAIN

__all__ = ["add_adn_config", "check_yacs_config_file", "merge_config", "FLOAT_KEY_RANGES"]

#: Float keys with a range, for the message when one is written as an integer.
FLOAT_KEY_RANGES = {
    "MODEL.ADN.DISTILL.TEMPERATURE": ("> 0", lambda v: v > 0),
    "MODEL.ADN.DISTILL.ALPHA": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "MODEL.ADN.DISTILL.SUB_TASK_WEIGHT": (">= 0", lambda v: v >= 0),
    "MODEL.ADN.DISTILL.KD_WEIGHT": (">= 0", lambda v: v >= 0),
    "MODEL.ADN.DISTILL.LOGITS_WEIGHT": (">= 0", lambda v: v >= 0),
}

# yacs' message (CfgNode._check_and_coerce_cfg_value_type): it converts no int to a float.
_FLOAT_GIVEN_INT = re.compile(
    r"Type mismatch \(<class 'float'> vs\. <class 'int'>\) with values \((.*) vs\. (-?\d+)\) "
    r"for config key: (\S+)"
)


def _float_given_int(error: ValueError, where: str) -> Optional[ValueError]:
    """A clear ValueError for yacs' type mismatch of a float key given an int; None for
    any other error."""
    match = _FLOAT_GIVEN_INT.search(str(error))
    if not match:
        return None
    default, given, key = match.group(1), int(match.group(2)), match.group(3)
    rule, ok = FLOAT_KEY_RANGES.get(key, ("", lambda v: True))
    suggestion = f"{given}.0" if ok(given) else default
    return ValueError(
        f"{key} must be a float{' ' + rule if rule else ''}, written with a decimal point "
        f"(e.g. {suggestion}); {where} gives the integer {given}, which the config system "
        f"(yacs) does not convert to a float. Fix: write {key} {suggestion}"
        + ("" if ok(given) else f" (the default; {given} is not {rule})")
        + "."
    )


#: the top-level keys of a LazyConfig (Python, or saved as YAML by LazyConfig.save)
LAZY_CONFIG_KEYS = ("model", "train", "dataloader", "optimizer")


def check_yacs_config_file(config_file: str) -> None:
    """A YAML config of Detectron2's yacs system, not a LazyConfig (a ``.py`` file or the
    ``config.yaml`` a lazy run saves), which yacs would report as a YAML syntax error or
    an unknown key: ValueError naming the tool that reads it."""
    lazy = config_file.endswith(".py")
    if not lazy and os.path.isfile(config_file):
        try:
            with open(config_file) as f:
                top = yaml.safe_load(f)
        except (yaml.YAMLError, UnicodeDecodeError):
            top = None  # yacs reports its own syntax errors
        lazy = isinstance(top, dict) and "MODEL" not in top and any(
            k in top for k in LAZY_CONFIG_KEYS)
    if lazy:
        raise ValueError(
            f"{config_file} is a LazyConfig (Detectron2's Python config system: model, train, "
            "dataloader ...), and this tool reads YAML configs of the yacs system (MODEL, "
            f"SOLVER, ...). Train or evaluate it with tools/lazyconfig_train_net.py "
            f"--config-file {config_file}, or give a YAML config such as configs/*.yaml."
        )


def merge_config(cfg, config_file: Optional[str] = None, opts: Sequence[str] = ()) -> None:
    """``cfg.merge_from_file(config_file)`` then ``cfg.merge_from_list(opts)``; a float key
    given an integer (``MODEL.ADN.DISTILL.TEMPERATURE 1``) raises a ValueError naming the
    key and the fix instead of yacs' type mismatch."""
    if config_file:
        check_yacs_config_file(config_file)
        try:
            cfg.merge_from_file(config_file)
        except ValueError as e:
            clear = _float_given_int(e, f"the config file {config_file}")
            if clear is None:
                raise
            raise clear from None
    try:
        cfg.merge_from_list(list(opts))
    except ValueError as e:
        clear = _float_given_int(e, "the command line")
        if clear is None:
            raise
        raise clear from None


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
    # Which weights of an official ADN training checkpoint MODEL.WEIGHTS loads: True the
    # "model_ema" entry (the exponential moving average of a run trained with --model-ema;
    # the authors' published accuracies are those of the EMA weights), False its "model"
    # entry (the raw weights of the last epoch). True with a file without "model_ema" is
    # an error. Not used by --resume (which loads this run's own checkpoint).
    _C.MODEL.ADN.LOAD_EMA = False
    # Whether the normalized layers of mandatory blocks carry a second norm set, used while
    # their stage skips (ADN's switchable norms: True, the paper). False: one norm set for
    # every depth setting (the paper's ablation "without switchable BN").
    _C.MODEL.ADN.SWITCHABLE_NORMS = True
    # Whether the shortcut (downsample) conv of a mandatory first block gets a skip norm
    # too. The authors' code switches the residual branch's norms only (False); its
    # statistics then mix both passes' inputs. The official ADN weights have none.
    _C.MODEL.ADN.SWITCH_SHORTCUT_NORM = False

    # Self-distillation (the paper's training): each iteration runs the super-net on the
    # task loss and student sub-nets taught to match the super-net's features, then one step.
    _C.MODEL.ADN.DISTILL = CN()
    # Train with self-distillation; False trains the super-net alone (a plain detector).
    _C.MODEL.ADN.DISTILL.ENABLED = True
    # Who learns from the super-net. The paper (and the authors' code): the base-net alone,
    # SUBNETS ["TTTT"] with ALWAYS_STUDENTS [] (2 passes per iteration). adadet's own
    # recipe, the "sandwich rule" of slimmable networks (the base-net every iteration plus
    # one of the 14 mixed settings drawn: ALWAYS_STUDENTS ["TTTT"], SUBNETS the mixed
    # settings, 3 passes), lives in configs named for it (*_sandwich.yaml) and in the
    # embedded CPU configs; docs/study.md gives its measurements.
    #
    # The settings students are drawn from each iteration (one entry: always that one).
    _C.MODEL.ADN.DISTILL.SUBNETS = ["TTTT"]
    # How many are drawn from SUBNETS per iteration, without replacement (all of them if
    # SUBNETS has no more); each student term is then the mean over all students. The
    # paper: 1. Every setting each iteration: SUBNETS the 15 sub-nets, NUM_STUDENTS 15, at
    # ~8x the cost.
    _C.MODEL.ADN.DISTILL.NUM_STUDENTS = 1
    # Students at EVERY iteration, besides those drawn from SUBNETS (which must not name
    # them again). The paper: none (its one student is SUBNETS' "TTTT").
    _C.MODEL.ADN.DISTILL.ALWAYS_STUDENTS = []
    # loss = ALPHA * L_super + (1 - ALPHA) * (SUB_TASK_WEIGHT * L_sub_task + KD_WEIGHT * L_kd)
    # ALPHA in [0, 1]; the authors' code uses 0.5 (ImageNet and RetinaNet).
    _C.MODEL.ADN.DISTILL.ALPHA = 0.5
    # Weight (>= 0) of the student's own task losses. The authors' ImageNet training gives
    # the base-net no label loss (0.0); their RetinaNet-ADN keeps its detection loss (1.0,
    # the default; docs/study.md measures 0.0).
    _C.MODEL.ADN.DISTILL.SUB_TASK_WEIGHT = 1.0
    # Weight (>= 0) of L_kd, the feature distillation below (0 turns it off).
    _C.MODEL.ADN.DISTILL.KD_WEIGHT = 1.0
    # Temperature (> 0) of the channel softmax in the KL divergences (the authors: 1.0).
    _C.MODEL.ADN.DISTILL.TEMPERATURE = 1.0
    # Feature maps distilled from the super-net (detached) to the sub-net, KL(super || sub)
    # of their channel softmaxes, averaged over the maps named. Any of: the backbone's
    # outputs (FPN levels "p2".."p6", RetinaNet "p3".."p7"; the gradient then also flows
    # through the FPN, shared with the super-net) and the bottom-up stage outputs
    # ("res2".."res5" of ResNet-ADN, "group1".."group4" of ViT-ADN: where the skippable
    # sub-paths act). The authors' ImageNet code distills the stage outputs (optionally);
    # their RetinaNet-ADN distills FPN/head features.
    # Default: ResNet-ADN's stage outputs (adadet's choice, docs/study.md).
    _C.MODEL.ADN.DISTILL.FEATURES = ["res2", "res3", "res4", "res5"]
    # "none": one channel distribution per position of each map; "global": one per image,
    # of the globally average-pooled map (the authors' ImageNet distillation of stages).
    _C.MODEL.ADN.DISTILL.POOLING = "none"
    # "mean": the KL averaged over positions and images; "batchmean": summed over the
    # positions of each image, averaged over images (torch KLDivLoss(reduction="batchmean"),
    # the authors' choice). Equal for POOLING "global". The defaults (none, mean) are
    # adadet's choice (docs/study.md measures the authors' global/batchmean against them).
    _C.MODEL.ADN.DISTILL.REDUCTION = "mean"
    # Weight of L_kd_logits, the distillation of classification logits from the super-net
    # (detached) to the sub-net, added to the student's terms:
    # loss = ALPHA * L_super + (1 - ALPHA) * (... + LOGITS_WEIGHT * L_kd_logits).
    # L_kd_logits is the mean of (a) the KL divergence of the dense head's sigmoid logits
    # (RPN objectness, or RetinaNet's per-class logits), per anchor, averaged over levels,
    # and (b) R-CNN only: the KL divergence of the ROI class scores (softmax over K+1), the
    # student's box head being run on the super-net's boxes. Both at TEMPERATURE, logged as
    # loss_kd_logits. Unsupported heads (Cascade R-CNN, Res5ROIHeads) raise an error.
    # 0 (the default) disables it: no hook, no extra computation.
    _C.MODEL.ADN.DISTILL.LOGITS_WEIGHT = 0.0

    # ViT-ADN (build_vit_adn_backbone, build_vit_adn_sfp_backbone): a plain ViT in 4 equal
    # groups of blocks, the last block of each group skippable. Its depth setting and split
    # are MODEL.ADN.DEPTH and MODEL.ADN.NUM_MANDATORY_BLOCKS (per group; empty = all but the
    # last block of each group).
    _C.MODEL.VIT_ADN = CN()
    # Token width: ViT-S 384, ViT-B 768, ViT-L 1024.
    _C.MODEL.VIT_ADN.EMBED_DIM = 768
    # Transformer blocks: ViT-S/B 12, ViT-L 24. They form 4 equal groups (one per letter of
    # MODEL.ADN.DEPTH), so this must be a multiple of 4. MODEL.ADN.NUM_MANDATORY_BLOCKS gives
    # the mandatory blocks per group; empty = all but the last block of each group.
    # (Not called DEPTH: that name is taken by the depth setting MODEL.ADN.DEPTH.)
    _C.MODEL.VIT_ADN.NUM_BLOCKS = 12
    # Attention heads: ViT-S 6, ViT-B 12, ViT-L 16 (EMBED_DIM must be a multiple).
    _C.MODEL.VIT_ADN.NUM_HEADS = 12
    # Side of the square patches; the backbone's output stride.
    _C.MODEL.VIT_ADN.PATCH_SIZE = 16
    # Hidden width of each block's MLP, as a multiple of EMBED_DIM (torchvision's mlp_dim
    # 3072 for ViT-B = 4.0 x 768).
    _C.MODEL.VIT_ADN.MLP_RATIO = 4.0
    # Bias in the query/key/value projection (torchvision's and timm's ViTs have one).
    _C.MODEL.VIT_ADN.QKV_BIAS = True
    # Epsilon of every LayerNorm of the ViT (torchvision's ViTs: 1e-6).
    _C.MODEL.VIT_ADN.NORM_EPS = 1e-6
    # Stochastic depth: the drop-path rate rises linearly from 0 in the first block to this
    # in the last (ViTDet: 0.1 for ViT-B, 0.4 for ViT-L). 0 disables it.
    _C.MODEL.VIT_ADN.DROP_PATH_RATE = 0.0
    # Side (in patches) of the attention windows of the blocks in WINDOW_BLOCK_INDEXES; the
    # other blocks attend globally. 0 = global attention in every block.
    _C.MODEL.VIT_ADN.WINDOW_SIZE = 0
    # Indexes (from 0) of the blocks with windowed attention. ViTDet keeps 4 global blocks;
    # here prefer global attention in mandatory blocks, which the base-net keeps.
    _C.MODEL.VIT_ADN.WINDOW_BLOCK_INDEXES = []
    # Image side the position embeddings were trained at (224: a 14 x 14 grid of 16-px
    # patches); they are resized to each input's patch grid.
    _C.MODEL.VIT_ADN.PRETRAIN_IMG_SIZE = 224
    # Simple feature pyramid: channels of every output level p2..p6.
    _C.MODEL.VIT_ADN.OUT_CHANNELS = 256
    # Norm of the pyramid's convs: "LN" (a channel LayerNorm, as ViTDet), "" for none, or a
    # Detectron2 get_norm name ("GN", "BN", "SyncBN").
    _C.MODEL.VIT_ADN.PYRAMID_NORM = "LN"
    # Pyramid levels made from the stride-16 map, as scale factors: 4.0 -> p2 (stride 4, two
    # deconvs), 2.0 -> p3, 1.0 -> p4, 0.5 -> p5 (max-pool); the top block adds p6 (and p7 for
    # RetinaNet, whose configs use [2.0, 1.0, 0.5]: p3..p7).
    _C.MODEL.VIT_ADN.SCALE_FACTORS = [4.0, 2.0, 1.0, 0.5]
    # Layer-wise learning-rate decay (ViTDet: 0.7 for ViT-B, 0.8 for ViT-L): block i of L
    # trains at LR x RATE^(L - i), patch and position embeddings at LR x RATE^(L + 1), the
    # rest at LR. 1.0 = off. Applied by ADNTrainer's optimizer (build_adn_optimizer), with
    # SGD or AdamW (SOLVER.OPTIMIZER).
    _C.MODEL.VIT_ADN.LR_DECAY_RATE = 1.0

    # Optimizer of ADNTrainer: "SGD" (Detectron2's: SOLVER.MOMENTUM, NESTEROV) or "ADAMW"
    # (ViTDet's, torch's default betas 0.9/0.999); both take SOLVER.BASE_LR, WEIGHT_DECAY,
    # WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS and CLIP_GRADIENTS.
    _C.SOLVER.OPTIMIZER = "SGD"

    # Exact --resume (an adadet addition): the training batch of iteration k, its
    # augmentations and the iteration's sampling randomness depend only on (SEED, k), so a
    # run resumed from a checkpoint continues exactly as if uninterrupted (same machine,
    # deterministic kernels). Needs a fixed SEED (>= 0). False: Detectron2's loader, whose
    # image stream starts again after a resume.
    _C.DATALOADER.EXACT_RESUME = False

    _C.TEST.ADN = CN()
    # Depth settings evaluated at TEST.EVAL_PERIOD, at the end of training and with
    # --eval-only: a list of settings, or ["all"] for every one of the 2^stages.
    _C.TEST.ADN.DEPTHS = list(DEFAULT_EVAL_CHAIN)  # FFFF, TFFF, TTFF, TTTF, TTTT
    # Per-depth BatchNorm statistics: before evaluating, re-estimate the running mean and
    # variance of every BN layer at each depth of TEST.ADN.DEPTHS on NUM_ITER batches of
    # the training loader, weights unchanged (fvcore's PreciseBN, one depth at a time), and
    # keep them per depth in the model (buffers running_mean_<depth>; set_depth uses them,
    # checkpoints and exports keep them). Training statistics describe the two trained
    # depths only. An adadet addition: the paper evaluates with the trained statistics.
    # No effect without BatchNorm (FrozenBN, GN, SyncBN excepted: it is BatchNorm).
    _C.TEST.ADN.PRECISE_BN = CN()
    _C.TEST.ADN.PRECISE_BN.ENABLED = False
    # Batches (of SOLVER.IMS_PER_BATCH images) per depth; Detectron2's TEST.PRECISE_BN
    # uses 200 on COCO.
    _C.TEST.ADN.PRECISE_BN.NUM_ITER = 50


def detectron2_config_file(relative_path: str) -> str:
    """A file of Detectron2's model-zoo configs (e.g. ``"common/models/mask_rcnn_fpn.py"``),
    found next to the installed package: ``detectron2.model_zoo`` imports ``pkg_resources``,
    which setuptools >= 81 no longer has, so its ``get_config`` may fail to import."""
    import detectron2

    root = os.path.join(os.path.dirname(os.path.abspath(detectron2.__file__)), "model_zoo", "configs")
    path = os.path.join(root, relative_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is not in the installed detectron2 ({detectron2.__file__}): adadet needs "
            "Detectron2's model-zoo configs (a source build or the sdist's package has them)."
        )
    return path


def load_detectron2_lazy_config(relative_path: str):
    """``LazyConfig.load`` of one of Detectron2's Python model-zoo configs (what
    ``model_zoo.get_config`` does, without ``pkg_resources``)."""
    from detectron2.config import LazyConfig

    return LazyConfig.load(detectron2_config_file(relative_path))
