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

# tiny_dataset (the adadet_test_tiny_* datasets) is a session fixture of tests/conftest.py.


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run on 2 cores; more threads than cores only slows convolutions down.
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)
