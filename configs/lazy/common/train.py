"""Detectron2's common ``train`` section, with a fixed seed (reproducible runs, as the YACS
demo's SEED 0; Detectron2's -1 draws a new seed per run)."""
from adadet.config import load_detectron2_lazy_config

train = load_detectron2_lazy_config("common/train.py").train
train.seed = 0
