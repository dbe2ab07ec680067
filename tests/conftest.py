import os

import pytest
import torch

# The suite runs on 2 cores; more threads than cores only slows it down.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Registers adadet_test_tiny_train / _val (tests/engine/engine_tiny_data.py) once per
    session, for every area that trains or evaluates on them; returns their folder."""
    from engine.engine_tiny_data import TINY_SPLITS, register_tiny, write_tiny_coco

    root = str(tmp_path_factory.mktemp("tiny_coco"))
    for split, count in TINY_SPLITS.items():
        write_tiny_coco(root, split, count)
    register_tiny(root)
    return root
