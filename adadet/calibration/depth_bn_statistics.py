"""BatchNorm statistics per depth setting: re-estimated after training, used by set_depth.

Training runs two depths only (the super-net and its student), so the running statistics
of a BN layer describe the inputs of those passes: the main norms of a mandatory block
and every norm of the later stages see the super-net's features, the shortcut norms a
mix of both passes. A mixed setting such as "TTTF" feeds res5 features that neither pass
produced. Re-estimating each BN layer's statistics at each depth on training images,
without changing any weight (PreciseBN, fvcore's ``update_bn_stats``), gives every
setting the statistics of its own inputs.

The statistics of depth ``D`` are buffers of the BN layer itself, ``running_mean_D`` and
``running_var_D`` (so they are saved and loaded with the model), next to
``running_mean_trained`` / ``running_var_trained``, the statistics training left. Whenever
the depth changes (:func:`adadet.set_depth`, ``using_depth``, ``backbone.depth = ...``),
the statistics of the new depth are copied into ``running_mean`` / ``running_var``, or the
trained ones where that depth was not re-estimated: a depth-change hook of the backbone
(:meth:`~adadet.depth.AdaptiveDepthModule.register_depth_change_hook`) does it, registered
when statistics are re-estimated or loaded. Training discards them
(:func:`discard_depth_bn_statistics`): the weights they were measured for change.

The statistics follow the backbone's letters of a setting. In a detector whose neck and
heads adapt too, only the backbone's BN layers get per-depth statistics (their inputs
depend on the backbone's letters alone); BN layers after the backbone keep the trained
ones.
"""
import itertools
import logging
import re
from typing import Any, Dict, Iterable, List, Sequence

import torch
import torch.nn as nn
from fvcore.nn.precise_bn import BN_MODULE_TYPES, update_bn_stats

from ..depth import BACKBONE_PART, adaptive_modules, backbone_modules, depth_layout, using_depth

__all__ = [
    "calibrate_depth_bn_statistics",
    "calibrated_depths",
    "discard_depth_bn_statistics",
    "prepare_depth_bn_buffers",
    "refresh_depth_bn_statistics",
]

logger = logging.getLogger(__name__)

TRAINED = "trained"
# a per-depth buffer's name, and its state-dict key
_SLOT_NAME = r"running_(?P<stat>mean|var)_(?P<slot>[TF]+|trained)"
_SLOT_BUFFER = re.compile(f"^{_SLOT_NAME}$")
_SLOT_KEY = re.compile(f"^(?P<module>.+)\\.{_SLOT_NAME}$")


def _slot_names(slot: str):
    return f"running_mean_{slot}", f"running_var_{slot}"


def _registry_holder(model: nn.Module) -> nn.Module:
    return adaptive_modules(model)[0]


class _PerDepthStatistics:
    """The depth-change hook of the first adaptive module: holds the BN layers that have
    per-depth statistics and gives them those of each new depth. A plain object, not a
    module: the layers stay registered where they are in the model, and a deep copy or
    pickle of the model maps them to its own layers."""

    def __init__(self, layers: Sequence[nn.Module] = ()):
        self.layers = list(layers)

    def __call__(self, module: nn.Module, depth: str) -> None:
        _apply_depth_bn_statistics(self.layers, depth)


def _hook(model: nn.Module):
    """The model's :class:`_PerDepthStatistics` hook, or None (also for a model without
    an adaptive-depth backbone)."""
    try:
        holder = _registry_holder(model)
    except ValueError:  # no adaptive-depth backbone
        return None
    return next((h for h in holder.depth_change_hooks if isinstance(h, _PerDepthStatistics)), None)


def _registry(model: nn.Module) -> List[nn.Module]:
    """The BN layers that hold per-depth statistics; none for a model without them."""
    hook = _hook(model)
    return list(hook.layers) if hook is not None else []


def refresh_depth_bn_statistics(model: nn.Module) -> None:
    """Apply the statistics of the model's current depth (after loading them)."""
    if _registry(model):
        holder = _registry_holder(model)
        holder.set_depth(holder.skip_flags)


def calibrated_depths(model: nn.Module) -> List[str]:
    """The depth settings whose BN statistics were re-estimated (empty if none)."""
    slots = set()
    for bn in _registry(model):
        slots.update(
            name[len("running_mean_") :]
            for name, _ in bn.named_buffers(recurse=False)
            if name.startswith("running_mean_")
        )
    slots.discard(TRAINED)
    return sorted(slots, key=lambda d: (d.count("T"), d))


def _apply_depth_bn_statistics(layers: Iterable[nn.Module], depth: str) -> None:
    """Copy the statistics of ``depth`` (else the trained ones) into the running ones of
    each of ``layers``."""
    for bn in layers:
        mean, var = _slot_names(depth)
        if not hasattr(bn, mean):
            mean, var = _slot_names(TRAINED)
        # new tensors, not copies into the old ones: a model traced at another depth shares
        # the old ones and keeps its statistics
        bn.running_mean = getattr(bn, mean).clone()
        bn.running_var = getattr(bn, var).clone()


def _register(model: nn.Module, layers: Sequence[nn.Module]) -> None:
    """Make ``layers`` the ones whose statistics follow the depth (hooked once per model)."""
    hook = _hook(model)
    if hook is None:
        hook = _PerDepthStatistics()
        _registry_holder(model).register_depth_change_hook(hook)
    hook.layers = list(layers)


def discard_depth_bn_statistics(model: nn.Module) -> None:
    """Restore the trained statistics and remove every per-depth buffer (before training
    on, since the weights they describe change)."""
    layers = _registry(model)
    if not layers:
        return
    _apply_depth_bn_statistics(layers, TRAINED)
    for bn in layers:
        for name in [n for n, _ in bn.named_buffers(recurse=False) if _SLOT_BUFFER.match(n)]:
            delattr(bn, name)
    _register(model, [])


def prepare_depth_bn_buffers(model: nn.Module, state_dict_keys: Iterable[str]) -> List[str]:
    """Create the per-depth buffers a checkpoint holds (``<bn>.running_mean_TTTF``, ...)
    so that ``load_state_dict`` fills them; returns the depth settings found."""
    modules = dict(model.named_modules())
    layers, slots = [], set()
    for key in state_dict_keys:
        match = _SLOT_KEY.match(key)
        if match is None or match["module"] not in modules:
            continue
        bn = modules[match["module"]]
        if not isinstance(bn, BN_MODULE_TYPES):
            continue
        name = f"running_{match['stat']}_{match['slot']}"
        if not hasattr(bn, name):
            bn.register_buffer(name, torch.empty_like(bn.running_mean))
        if bn not in layers:
            layers.append(bn)
        slots.add(match["slot"])
    if layers:
        _register(model, list(dict.fromkeys(_registry(model) + layers)))
    slots.discard(TRAINED)
    return sorted(slots)


def _bn_layers_run(model: nn.Module, run, batch) -> List[nn.Module]:
    """The BN layers that take part in ``run(batch)`` at the model's current depth."""
    ran = []
    handles = [
        m.register_forward_pre_hook(lambda module, args: ran.append(module))
        for m in model.modules()
        if isinstance(m, BN_MODULE_TYPES)
    ]
    try:
        with torch.no_grad():
            run(batch)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(ran))


class _Forward(nn.Module):
    """What calibration runs on one batch: the backbone alone when every BN layer is in
    it (faster), else the whole detector in inference."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        backbone = getattr(detector, "backbone", None)
        in_backbone = set(backbone.modules()) if backbone is not None else set()
        self.backbone_only = backbone is not None and hasattr(detector, "preprocess_image") and all(
            m in in_backbone for m in detector.modules() if isinstance(m, BN_MODULE_TYPES)
        )

    def forward(self, batch):
        if self.backbone_only:
            return self.detector.backbone(self.detector.preprocess_image(batch).tensor)
        return self.detector(batch)


def calibrate_depth_bn_statistics(
    detector: nn.Module, batches: Iterable[List[Dict[str, Any]]], depths: Sequence[str], num_iter: int
) -> List[str]:
    """Re-estimate the BN statistics of ``detector`` at each of ``depths`` on ``num_iter``
    batches (Detectron2 inputs, e.g. from the training loader) and store them per depth.

    The weights and the trained statistics are unchanged; afterwards the model's current
    depth uses its new statistics. Returns the backbone settings calibrated (none if the model has no
    BatchNorm layer, e.g. FrozenBN or GroupNorm: their statistics do not depend on data).
    """
    if num_iter < 1:
        raise ValueError(f"TEST.ADN.PRECISE_BN.NUM_ITER must be >= 1, got {num_iter}.")
    layout = depth_layout(detector)
    # the backbone's letters of each setting, once each: the slots the statistics go to
    depths = list(dict.fromkeys(layout.part_setting(d, BACKBONE_PART) for d in depths))
    in_backbone = {m for b in backbone_modules(detector) for m in b.modules()}
    if not any(isinstance(m, BN_MODULE_TYPES) for m in detector.modules()):
        logger.info("No BatchNorm layer: per-depth BN statistics are not needed.")
        return []
    discard_depth_bn_statistics(detector)
    batches = list(itertools.islice(iter(batches), num_iter))
    if len(batches) < num_iter:
        raise ValueError(f"Per-depth BN statistics need {num_iter} batches, got {len(batches)}.")
    forward = _Forward(detector)
    all_bn = [m for m in detector.modules() if isinstance(m, BN_MODULE_TYPES)]
    trained = {bn: (bn.running_mean.clone(), bn.running_var.clone()) for bn in all_bn}
    batch_counts = {bn: bn.num_batches_tracked.clone() for bn in all_bn if bn.num_batches_tracked is not None}
    was_training = detector.training
    calibrated: Dict[nn.Module, Dict[str, Any]] = {}
    try:
        detector.eval()
        for depth in depths:
            with using_depth(detector, depth):
                layers = _bn_layers_run(detector, forward, batches[0])
                if len(layout.parts) > 1:
                    layers = [bn for bn in layers if bn in in_backbone]
                for bn in layers:
                    bn.train()
                update_bn_stats(forward, batches, num_iter)
                for bn in layers:
                    bn.eval()
                    calibrated.setdefault(bn, {})[depth] = (
                        bn.running_mean.clone(),
                        bn.running_var.clone(),
                    )
                    bn.running_mean.copy_(trained[bn][0])
                    bn.running_var.copy_(trained[bn][1])
            logger.info("BN statistics of depth %s re-estimated (%d layers)", depth, len(layers))
    finally:
        detector.train(was_training)
        for bn, count in batch_counts.items():  # calibration is no training
            bn.num_batches_tracked.copy_(count)
    for bn, per_depth in calibrated.items():
        for slot, (mean, var) in [(TRAINED, trained[bn])] + list(per_depth.items()):
            mean_name, var_name = _slot_names(slot)
            bn.register_buffer(mean_name, mean)
            bn.register_buffer(var_name, var)
    _register(detector, list(calibrated))
    refresh_depth_bn_statistics(detector)
    return depths
