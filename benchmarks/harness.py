"""Shared pieces of the benchmarks: device description, configs of the two detectors, the
fixed inputs, timing, statistics and memory probes. ``run.py`` holds the sections."""
import ctypes
import gc
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances, PolygonMasks

import adadet
from adadet.data.synthesis import shapes_samples
from adadet.evaluation import fixed_detections
from adadet.utils.timing import Stopwatch, synchronize
from adadet.utils.environment import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
ADN_CONFIG = REPO / "configs" / "mask_rcnn_ada_r50.yaml"


def stock_config_path() -> Path:
    """Detectron2's own Mask R-CNN R50-FPN 1x config (shipped inside the package)."""
    import detectron2

    return (
        Path(detectron2.__file__).resolve().parent
        / "model_zoo" / "configs" / "COCO-InstanceSegmentation" / "mask_rcnn_R_50_FPN_1x.yaml"
    )


# --------------------------------------------------------------------------- device


def describe_device(device: torch.device) -> Dict[str, object]:
    """What ran the benchmark, named in every output: CUDA device name, or CPU model and the
    number of threads torch uses (CPU timings scale with it)."""
    threads = torch.get_num_threads()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        full = f"{name} (CUDA {torch.version.cuda})"
        slug_source = f"cuda {name}"
    else:
        name = cpu_model_name()
        full = f"{name}, {threads} thread{'s' if threads != 1 else ''}"
        slug_source = f"cpu {name} {threads}t"
    return {
        "type": device.type,
        "name": full,
        "slug": re.sub(r"[^a-z0-9]+", "-", slug_source.lower()).strip("-"),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def autocast(device: torch.device, enabled: bool):
    """Mixed precision as the project trains it: float16 on CUDA, bfloat16 on CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


# --------------------------------------------------------------------------- configs


def _resnet_overrides(cfg, resnet_depth: int) -> None:
    cfg.MODEL.RESNETS.DEPTH = resnet_depth
    if resnet_depth in (18, 34):
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64  # BasicBlock ResNets need it


def detector_cfg(
    resnet_depth: int,
    device: torch.device,
    stock: bool = False,
    detections: int = 100,
    overrides: Sequence = (),
    config_file=None,
):
    """Mask R-CNN R<depth>-FPN, random init, on ``device``.

    ``stock=False``: the project's ADN config ``config_file`` (default ``ADN_CONFIG``,
    ``build_resnet_adn_fpn_backbone``).
    ``stock=True``: Detectron2's own mask_rcnn_R_50_FPN_1x.yaml (``build_resnet_fpn_backbone``)
    with the keys where the ADN config differs (norm, stride placement, pixel statistics,
    input format) set to the ADN values, so both compute the same maths on the same shapes.

    Detection count: random weights give near-uniform class scores (~1/81), so the usual
    SCORE_THRESH_TEST of 0.05 would keep no box and skip the mask head.
    :func:`adadet.evaluation.fixed_detections` makes every image keep exactly
    ``detections`` boxes (default 100, COCO evaluation's maximum): the ROI heads do the
    same, realistic, worst-case work at every depth.
    ``overrides``: a flat KEY, VALUE list applied to both detectors (``--quick`` shrinks the
    heads with it).
    """
    cfg = get_cfg()
    adadet.add_adn_config(cfg)
    cfg.merge_from_file(str(stock_config_path() if stock else (config_file or ADN_CONFIG)))
    if stock:
        adn = detector_cfg(resnet_depth, device, stock=False, detections=detections,
                           overrides=overrides)
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = adn.MODEL.RESNETS.STRIDE_IN_1X1
        cfg.MODEL.PIXEL_MEAN = list(adn.MODEL.PIXEL_MEAN)
        cfg.MODEL.PIXEL_STD = list(adn.MODEL.PIXEL_STD)
        cfg.INPUT.FORMAT = adn.INPUT.FORMAT
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = str(device)
    # One process, no SyncBN group: plain BN (the ADN config uses SyncBN for 8 GPUs).
    cfg.MODEL.RESNETS.NORM = "BN"
    _resnet_overrides(cfg, resnet_depth)
    fixed_detections(cfg, detections)
    cfg.merge_from_list(list(overrides))
    return cfg


# Keys that may differ between the two detectors: the backbone builder (the point of the
# comparison), adadet's own keys, and where the weights come from.
_ALLOWED_DIFFERENCES = ("MODEL.BACKBONE.NAME", "MODEL.ADN.", "MODEL.VIT_ADN.", "MODEL.WEIGHTS")


def _flatten(node, prefix=""):
    items = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            items.update(_flatten(value, f"{prefix}{key}."))
        else:
            items[f"{prefix}{key}"] = value
    return items


def model_cfg_differences(cfg_a, cfg_b) -> List[str]:
    """The MODEL keys (other than the allowed ones) whose values differ, plus INPUT.FORMAT."""
    a = _flatten(cfg_a.MODEL, "MODEL.")
    b = _flatten(cfg_b.MODEL, "MODEL.")
    a["INPUT.FORMAT"], b["INPUT.FORMAT"] = cfg_a.INPUT.FORMAT, cfg_b.INPUT.FORMAT
    return sorted(
        f"{key}: {a.get(key)!r} != {b.get(key)!r}"
        for key in set(a) | set(b)
        if not key.startswith(_ALLOWED_DIFFERENCES) and a.get(key) != b.get(key)
    )


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Load ``source``'s state dict into ``target``; only ADN's skip norms may be left over."""
    result = target.load_state_dict(source.state_dict(), strict=False)
    unexpected = [k for k in result.unexpected_keys if ".norm_skip." not in k]
    if result.missing_keys or unexpected:
        raise RuntimeError(
            f"The two detectors do not have the same weights: missing {result.missing_keys[:5]}"
            f", unexpected {unexpected[:5]} (first 5 of each)."
        )


# --------------------------------------------------------------------------- inputs


def make_inputs(num_images: int, size: Sequence[int], seed: int, device: torch.device):
    """A fixed set of real-looking images with annotations: the project's synthetic shapes
    (textured background, 1-4 shaded objects, sensor noise) of the val split for ``seed``,
    resized to ``size`` = (H, W). Returns (inference inputs, training inputs), already on
    ``device`` so no host-to-device copy is timed."""
    import cv2

    height, width = size
    inference, training = [], []
    for sample in shapes_samples("val", num_images, seed=seed):
        h, w = sample.image.shape[:2]
        sx, sy = width / w, height / h
        image = cv2.resize(sample.image, (width, height), interpolation=cv2.INTER_LINEAR)
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device)
        boxes, polygons, classes = [], [], []
        for instance in sample.instances:
            scaled = [
                np.asarray(p, dtype=np.float64).reshape(-1, 2) * (sx, sy)
                for p in instance.polygons
            ]
            points = np.concatenate(scaled)
            boxes.append([*points.min(axis=0), *points.max(axis=0)])
            polygons.append([p.reshape(-1) for p in scaled])
            classes.append(instance.category_id - 1)
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32, device=device))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64, device=device)
        instances.gt_masks = PolygonMasks(polygons)
        one = {"image": tensor, "height": height, "width": width}
        inference.append(one)
        training.append({**one, "instances": instances})
    return inference, training


def padded_size(size: Sequence[int], divisibility: int) -> List[int]:
    """The image size the backbone sees (Detectron2 pads to the FPN's size divisibility)."""
    return [int(math.ceil(s / divisibility) * divisibility) for s in size]


# --------------------------------------------------------------------------- timing


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call takes, with the device synchronised on both sides."""
    with Stopwatch(device) as watch:
        fn()
    return watch.seconds


def rotated(items: Sequence, shift: int) -> list:
    """Round-robin order for one round: each round starts at a different setting, so no
    setting is always the first after a pause (or always follows the same one)."""
    shift %= len(items)
    return list(items[shift:]) + list(items[:shift])


_UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


def summarize(seconds: Sequence[float], unit: str = "ms") -> Dict[str, float]:
    """Median, 90th percentile and minimum of timings given in seconds, in ``unit``."""
    values = np.asarray(seconds, dtype=np.float64) * _UNITS[unit]
    return {
        f"median_{unit}": float(np.median(values)),
        f"p90_{unit}": float(np.percentile(values, 90)),
        f"min_{unit}": float(values.min()),
        "samples": int(values.size),
    }


class Progress:
    """Prints how far a long loop is, at most every ``every_s`` seconds (and at the end)."""

    def __init__(self, label: str, total: int, log: Callable[[str], None], every_s: float = 10):
        self.label, self.total, self.log, self.every_s = label, total, log, every_s
        self.done = 0
        self.start = self.last = time.perf_counter()

    def step(self, note: str = "") -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done == self.total or now - self.last >= self.every_s:
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.done * (self.total - self.done)
            self.log(
                f"{self.label}: {self.done}/{self.total} ({elapsed:.0f} s, ~{eta:.0f} s left)"
                + (f" {note}" if note else "")
            )


# --------------------------------------------------------------------------- memory


class CpuPeakMemory:
    """Peak resident memory a call adds on Linux: the kernel's high-water mark (VmHWM) is
    reset through /proc/self/clear_refs, after glibc's malloc_trim has handed memory freed
    by earlier work back to the kernel (else it would be reused without raising RSS, and
    hide the growth). Result: max RSS during the call minus RSS before it."""

    def __init__(self):
        self.available = Path("/proc/self/clear_refs").exists()
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None
        if self.available:
            try:
                self._reset()
            except OSError:
                self.available = False

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS to the current RSS

    def prepare(self) -> int:
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self._reset()
        return self._status_kb("VmRSS")

    def peak_since(self, base_kb: int) -> float:
        """MiB the peak RSS rose over ``base_kb`` since ``prepare``."""
        return (self._status_kb("VmHWM") - base_kb) / 1024.0


def measure_step(step: Callable[[], object], device: torch.device, cpu_memory: CpuPeakMemory):
    """(seconds, peak MiB the step adds over what was allocated before it, or None)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        seconds = time_call(step, device)
        return seconds, (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if not cpu_memory.available:
        return time_call(step, device), None
    base_kb = cpu_memory.prepare()
    seconds = time_call(step, device)
    return seconds, cpu_memory.peak_since(base_kb)


def saved_activation_mib(step: Callable[[], object], model: torch.nn.Module) -> float:
    """MiB of tensors autograd saves for the backward pass during ``step`` (each storage
    once, parameters excluded): the activation memory of training, exact and independent
    of the allocator. Measured on a separate, untimed step (the hook costs time)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: Dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values()) / 2**20


def ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    if value is None or not reference:
        return None
    return value / reference
