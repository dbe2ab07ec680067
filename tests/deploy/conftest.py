"""Fixtures of the deployment tests: a tiny random-init Mask R-CNN (R-18 ADN, FPN 32
channels, 128 px test size), its weights on disk, and real images of the embedded shapes
data set written as JPEG files."""
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # deploy_testing, the helpers of these tests
    sys.path.insert(0, str(HERE))

from deploy_testing import TINY_CONFIG  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cfg():
    from adadet.deploy.predictor import setup_deploy_cfg

    return setup_deploy_cfg(str(TINY_CONFIG))


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from adadet.deploy.predictor import build_inference_model

    torch.manual_seed(0)
    return build_inference_model(tiny_cfg)


@pytest.fixture(scope="session")
def tiny_weights(tiny_model, tmp_path_factory):
    """tiny_model's weights as a checkpoint, for the tools (which build their own model)."""
    from detectron2.checkpoint import DetectionCheckpointer

    directory = tmp_path_factory.mktemp("weights")
    DetectionCheckpointer(tiny_model, save_dir=str(directory)).save("tiny")
    return str(directory / "tiny.pth")


@pytest.fixture(scope="session")
def shapes_images(tmp_path_factory):
    """Two images of the embedded shapes validation set (different sizes), as JPEG files."""
    from PIL import Image

    from adadet.data.synthesis import shapes_samples

    directory = tmp_path_factory.mktemp("images")
    paths = []
    for sample in shapes_samples("val", 2):
        path = directory / f"{sample.name}.jpg"
        Image.fromarray(sample.image).save(path, quality=92)
        paths.append(str(path))
    return paths
