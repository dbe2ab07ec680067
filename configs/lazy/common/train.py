"""Detectron2's common ``train`` section, with a fixed seed (the ranks of a DDP run must
draw the same students; Detectron2's -1 would draw a new seed per run)."""
from detectron2 import model_zoo

train = model_zoo.get_config("common/train.py").train
train.seed = 0
