"""Inference on single images at a chosen depth: Detectron2's ``DefaultPredictor`` with the
ADN checkpointer, a depth argument and the latency of the model call.

Also the shared set-up of the deployment tools: the config, the model with its weights,
and the image preprocessing the test loader does (format, ``ResizeShortestEdge``).
"""
import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model
from detectron2.structures import Instances

from ..checkpoint import ADNCheckpointer
from ..config import add_adn_config, merge_config
from ..depth import depth_layout, get_depth, using_depth
from ..modeling.adaptive_parts import config_depth_layout
from ..utils.timing import ForwardTimer

logger = logging.getLogger(__name__)


def setup_deploy_cfg(config_file: str, opts: Sequence[str] = (), depth: Optional[str] = None):
    """Detectron2's defaults + adadet's keys + the file + ``opts``; ``depth`` overrides
    ``MODEL.ADN.DEPTH``. Runs on CPU when no GPU is visible. Registers the embedded data
    sets, so their metadata (class names) is there."""
    import adadet.data  # noqa: F401  (registers adadet_shapes_*, adadet_photos)

    cfg = get_cfg()
    add_adn_config(cfg)
    merge_config(cfg, config_file, opts)  # clear errors for ints in float keys
    if depth is not None:
        try:
            cfg.MODEL.ADN.DEPTH = config_depth_layout(cfg).normalize(depth)
        except (TypeError, ValueError) as e:
            raise type(e)(f"depth {depth!r}: {e}") from None
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def build_inference_model(cfg) -> nn.Module:
    """The detector of ``cfg`` in eval mode, with ``MODEL.WEIGHTS`` loaded through
    :class:`ADNCheckpointer`, which refuses a checkpoint that leaves any weight at random
    init (random init, with a warning, when no weights are given)."""
    model = build_model(cfg)
    model.eval()
    if cfg.MODEL.WEIGHTS:
        # every weight, or the tool would run random layers
        ADNCheckpointer.from_config(cfg, model, require_all_weights=True).load(cfg.MODEL.WEIGHTS)
    else:
        logger.warning(
            "MODEL.WEIGHTS is empty: the model is randomly initialised, so its predictions "
            "are meaningless (fine for checking the export; give MODEL.WEIGHTS for real use)."
        )
    return model


def test_resize(cfg) -> T.ResizeShortestEdge:
    """The test-time resize of Detectron2's test loader and DefaultPredictor."""
    return T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)


def to_model_input(image: np.ndarray, cfg) -> torch.Tensor:
    """An (H, W, C) uint8 image already in ``cfg.INPUT.FORMAT`` -> the model's (C, h, w)
    float tensor at the test size."""
    resized = test_resize(cfg).get_transform(image).apply_image(image)
    return torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))


def read_model_input(path: str, cfg) -> torch.Tensor:
    """The model's input tensor for the image file at ``path`` (format and test resize)."""
    return to_model_input(read_image(path, format=cfg.INPUT.FORMAT), cfg)


def dataset_metadata(cfg):
    """Metadata (thing_classes, ...) of the first test data set, as Detectron2's demo uses."""
    return MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")


@dataclass
class DepthPrediction:
    depth: str
    #: predictions in the coordinates of the original image, on the CPU
    instances: Instances
    #: median wall time of the model call (resize and format conversion excluded)
    latency_ms: float


class AdaptiveDepthPredictor(DefaultPredictor):
    """Detectron2's ``DefaultPredictor`` (BGR image in, predictions of the original size
    out) for one ADN model run at any depth setting, timed.

    >>> predictor = AdaptiveDepthPredictor(cfg)
    >>> prediction = predictor(cv2.imread("input.jpg"), depth="TTTT")
    """

    def __init__(self, cfg, model: Optional[nn.Module] = None, repeat: int = 1, warmup: int = 1):
        # Not DefaultPredictor.__init__: it builds a model of its own and loads the weights
        # with DetectionCheckpointer, not ADNCheckpointer. What its __call__ reads (cfg,
        # model, aug, input_format) is set as it sets it, in v0.6 and main alike.
        self.cfg = cfg.clone()
        self.model = model if model is not None else build_inference_model(self.cfg)
        self.model.eval()
        self.metadata = dataset_metadata(self.cfg)
        self.aug = test_resize(self.cfg)
        self.input_format = self.cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT {self.input_format!r} is not supported; use RGB or BGR.")
        self.repeat = max(1, int(repeat))
        # Untimed runs before the first timed one: the first call of a process pays for
        # allocations and lazy initialisation, which is no property of any depth.
        self._warmup_left = max(0, int(warmup))

    def __call__(self, original_image: np.ndarray, depth: Optional[str] = None) -> DepthPrediction:
        """``original_image``: (H, W, C) uint8 in BGR order (as ``cv2.imread`` gives)."""
        depth = depth_layout(self.model).normalize(depth) if depth is not None else get_depth(self.model)
        with using_depth(self.model, depth):
            for _ in range(self._warmup_left):
                super().__call__(original_image)
            self._warmup_left = 0
            with ForwardTimer(self.model) as timer:  # the model call only, not the resizing
                for _ in range(self.repeat):
                    outputs = super().__call__(original_image)
        return DepthPrediction(
            depth=depth, instances=outputs["instances"].to("cpu"), latency_ms=timer.median_ms()
        )
