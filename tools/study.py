#!/usr/bin/env python
"""The study: train recipes with several seeds, evaluate all 16 depth settings, compare.

    tools/study.py --recipes fpn stages --seeds 0 1 2            # train + evaluate + report
    tools/study.py --recipes stages --seeds 0 1 2 --split test   # the final figures

Each run is ``tools/train_net.py`` (so every Detectron2 convention applies) with the
study's config (``configs/mask_rcnn_ada_r18_polygons_cpu.yaml``), ``SEED <seed>`` and the
recipe's overrides, in ``<output>/<recipe>/seed<seed>``. Then ``--eval-only`` evaluates its
``model_final.pth`` at every setting on ``--split`` (``tune``: where recipes are compared;
``test``: the final figures, looked at by no choice), with the training BN statistics and
with per-depth BN statistics (``--bn`` both). A finished run or evaluation is not redone, so
an interrupted study continues where it stopped. The report (``study_<split>.{json,csv,md}``
and ``study_<split>.png``) gives per recipe and setting the mean and standard deviation
over seeds of box and mask AP, with backbone GFLOPs at 224x224 and detector latency.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = os.path.join(ROOT, "configs", "mask_rcnn_ada_r18_polygons_cpu.yaml")
STAGES = '["res2","res3","res4","res5"]'
FPN = '["p2","p3","p4","p5","p6"]'

#: Recipe name -> (what it is, config overrides). The first ones are the paper's ablations.
RECIPES = {
    "fpn": ("per-position KL on the FPN levels p2-p6 (adadet <= 0.1 default)", []),
    "stages": (
        "per-position KL on the stage outputs res2-res5",
        ["MODEL.ADN.DISTILL.FEATURES", STAGES],
    ),
    "stages_pooled": (
        "KL of globally pooled stage outputs res2-res5, batchmean (the authors' ImageNet)",
        ["MODEL.ADN.DISTILL.FEATURES", STAGES, "MODEL.ADN.DISTILL.POOLING", "global",
         "MODEL.ADN.DISTILL.REDUCTION", "batchmean"],
    ),
    "stages_fpn": (
        "per-position KL on res2-res5 and p2-p6",
        ["MODEL.ADN.DISTILL.FEATURES", '["res2","res3","res4","res5","p2","p3","p4","p5","p6"]'],
    ),
    "no_kd": ("no distillation term: the base-net learns from labels only",
              ["MODEL.ADN.DISTILL.KD_WEIGHT", "0.0"]),
    "super_only": ("the super-net alone (no base-net pass)", ["MODEL.ADN.DISTILL.ENABLED", "False"]),
    "sandwich": (
        "a student drawn per iteration among all 15 sub-nets (not the paper)",
        ["MODEL.ADN.DISTILL.SUBNETS", '["all_subnets"]'],
    ),
}
