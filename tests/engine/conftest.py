"""Fixtures of the engine tests (helpers: engine_tiny_data.py, importable by name because
this folder is put on sys.path, also for subprocesses and spawned workers)."""
import os
import sys

import pytest
import torch

import adadet  # noqa: F401  (registers the ADN backbones)

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the helpers below are also imported by subprocess scripts
    sys.path.insert(0, HERE)

from engine_tiny_data import register_tiny, write_tiny_coco  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Registers adadet_test_tiny_train / _val (once per session); returns their folder."""
    root = str(tmp_path_factory.mktemp("tiny_coco"))
    for split, count in (("train", 6), ("val", 3)):
        write_tiny_coco(root, split, count)
    register_tiny(root)
    return root


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run on 2 cores; more threads than cores only slows convolutions down.
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
