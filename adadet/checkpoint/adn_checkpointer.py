"""Loading weights into ADN models: official ADN, torchvision and Detectron2/MSRA layouts.

:class:`ADNCheckpointer` is Detectron2's ``DetectionCheckpointer``; what it reads is listed
in docs/weights.md. It adds: torchvision-layout ResNets and ViTs, renamed by
:mod:`.resnet_keys` / :mod:`.vit_keys` and placed by Detectron2's matching heuristics; skip
norms started from the main norms, logged; a strict ResNet backbone (Detectron2 only warns,
which would leave a half-loaded backbone running; head weights keep Detectron2's behaviour:
fine-tuning changes their shapes); errors that name the file and the fix (:mod:`.errors`); and atomic
saving, so a run killed while saving keeps a ``last_checkpoint`` that names a complete file.
"""
import collections
import contextlib
import errno
import glob
import os
import shutil
import tempfile
from typing import Dict, List, Optional
from urllib.parse import urlparse

import torch
import torch.nn as nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names
from detectron2.modeling.backbone.resnet import ResNet

from ..calibration.depth_bn_statistics import prepare_depth_bn_buffers, refresh_depth_bn_statistics
from ..utils.messages import first_few
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointWriteError,
    SkipNormsMissingError,
    check_skip_norm_init,
    no_state_dict_error,
    read_error,
)
from .reading import (
    EMA_ENTRY,
    check_file_exists,
    has_ema,
    select_weights,
    torch_load,
    unwrap_state_dict,
)
from .resnet_keys import (
    ADN,
    check_config_for_torchvision_weights,
    DETECTRON2_BACKBONE,
    TORCHVISION,
    convert_torchvision_checkpoint,
    detect_layout,
    is_resnet_key,
    is_skip_norm_key,
    mandatory_blocks_from_keys,
    resnet_structure,
)
from .vit_keys import convert_vit_checkpoint, detect_vit_layout, model_vit_structure

#: The tool that converts what the checkpointer reads directly into a ``.pkl`` once,
#: named in the messages (e.g. for files that only load with ``--trust``).
CONVERTER = "tools/convert_adn_weights.py"

#: Suffix of the temporary file a checkpoint is written to before it takes its name.
PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_open(path: str, mode: str):
    """A file to write ``path`` through: a temporary of the same directory, renamed into
    place (``os.replace`` is atomic) once written, so that a process killed at any moment
    leaves the old ``path`` or the new one, never a truncated file. Temporaries a killed
    writer left are removed first; a failed write removes its own."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + "."
    stale_pattern = os.path.join(glob.escape(directory), glob.escape(prefix) + "*" + PARTIAL_SUFFIX)
    for stale in glob.glob(stale_pattern):
        os.remove(stale)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    # Make the rename itself durable (a power loss right after it keeps the new name).
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(directory, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _AtomicWrites:
    """Detectron2's PathManager, with the files fvcore's ``save`` and
    ``tag_last_checkpoint`` write into a local directory written by :func:`atomic_open`."""

    def __init__(self, path_manager):
        self._path_manager = path_manager

    def __getattr__(self, name):
        return getattr(self._path_manager, name)

    def open(self, path, mode="r", **kwargs):
        if "w" in mode and os.path.isdir(os.path.dirname(path)):
            return atomic_open(path, mode)
        return self._path_manager.open(path, mode, **kwargs)


_NUM_BATCHES = "num_batches_tracked"
_RUNNING_STATS = ("running_mean", "running_var")


def _ignorable(key: str) -> bool:
    """Keys whose absence or excess never makes a backbone half-loaded: BN's batch counter
    (MSRA weights have none, FrozenBN has none) and skip norms (handled on their own)."""
    return key.endswith(_NUM_BATCHES) or is_skip_norm_key(key)


def _out_of_space(error: BaseException) -> bool:
    """Whether a failed write ran out of disk: ENOSPC / EDQUOT, or torch's zip writer
    reporting the short write it got (``[enforce fail at inline_container.cc] ...
    unexpected pos``, ``file write failed``)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left" in text or (
        "inline_container" in text and ("unexpected pos" in text or "write failed" in text))


#: a head's class predictor -> (its config key, how its output count gives the classes)
_CLASS_PREDICTORS = {
    "roi_heads.box_predictor.cls_score.weight": ("MODEL.ROI_HEADS.NUM_CLASSES", lambda n: n - 1),
    "roi_heads.mask_head.predictor.weight": ("MODEL.ROI_HEADS.NUM_CLASSES", lambda n: n),
}


def _checkpoint_classes(shapes) -> List[tuple]:
    """(config key, the checkpoint's value) read off class predictors of other shapes."""
    found = {}
    for key, checkpoint_shape, _ in shapes:
        if key in _CLASS_PREDICTORS:
            name, classes = _CLASS_PREDICTORS[key]
            found.setdefault(name, classes(checkpoint_shape[0]))
    return list(found.items())


class ADNCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer, aware of ADN's skip norms and strict about the backbone.

    Args:
        model, save_dir, save_to_disk, checkpointables: as for ``DetectionCheckpointer``.
        skip_norm_init: what to do when the checkpoint has no skip norms: ``"copy"`` (start
            each as a copy of its main norm) or ``"error"`` (raise
            :class:`SkipNormsMissingError`); ``MODEL.ADN.SKIP_NORM_INIT`` in configs.
        strict_backbone: raise :class:`CheckpointMismatchError` when the ResNet weights
            of the model and of the checkpoint do not match one to one.
        load_ema: load the ``model_ema`` entry of an official ADN checkpoint (the EMA
            weights of a ``--model-ema`` run, those of the published accuracies) instead of
            ``model``; ``MODEL.ADN.LOAD_EMA`` in configs. Not for ``--resume``, which loads
            this run's own checkpoint.
        require_all_weights: raise :class:`CheckpointMismatchError` when the checkpoint
            leaves any weight of the model at its random initialisation (missing, or of
            another shape, e.g. a predictor for another number of classes): what an
            evaluation or a deployment loads (skip norms absent from the checkpoint start
            as copies of their main norms, as always).

    After ``load``, ``needs_torchvision_config`` tells whether the weights were
    torchvision-style (official ADN, torchvision). A checkpointer made by
    :meth:`from_config` then checks the config against them
    (:func:`~adadet.checkpoint.check_config_for_torchvision_weights`): a wrong stride
    position or channel order would not fail, only detect poorly.
    """

    def __init__(
        self,
        model,
        save_dir="",
        *,
        save_to_disk=None,
        skip_norm_init: str = "copy",
        strict_backbone: bool = True,
        load_ema: bool = False,
        require_all_weights: bool = False,
        **checkpointables,
    ):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = _AtomicWrites(self.path_manager)  # fvcore's save() writes with it
        check_skip_norm_init(skip_norm_init)
        self.skip_norm_init = skip_norm_init
        self.strict_backbone = strict_backbone
        self.load_ema = bool(load_ema)
        self.require_all_weights = bool(require_all_weights)
        self.needs_torchvision_config = False
        self._cfg = None  # the config torchvision-style weights are checked against
        self._source: Optional[str] = None
        self._resuming = False

    @classmethod
    def from_config(cls, cfg, model, save_dir="", **kwargs) -> "ADNCheckpointer":
        """A checkpointer with the config's ``MODEL.ADN.SKIP_NORM_INIT`` and ``LOAD_EMA``,
        which checks ``cfg`` after loading torchvision-style weights."""
        kwargs.setdefault("skip_norm_init", cfg.MODEL.ADN.SKIP_NORM_INIT)
        kwargs.setdefault("load_ema", cfg.MODEL.ADN.LOAD_EMA)
        checkpointer = cls(model, save_dir, **kwargs)
        checkpointer._cfg = cfg
        return checkpointer

    # -- writing ---------------------------------------------------------------------------

    def save(self, name: str, **kwargs) -> None:
        """fvcore's, written atomically (:func:`atomic_open`); a write that fails for want
        of disk space says so, and what to do, instead of torch's stream-writer error."""
        try:
            super().save(name, **kwargs)
        except (OSError, RuntimeError) as e:
            if not _out_of_space(e):
                raise
            free = shutil.disk_usage(self.save_dir).free if os.path.isdir(self.save_dir) else 0
            raise CheckpointWriteError(
                f"The checkpoint {name}.pth could not be written to {self.save_dir}: the disk "
                f"is full ({free / 2**20:.0f} MiB free; {type(e).__name__}: {str(e)[:120]}). "
                "Nothing already saved changed: checkpoints are written to a temporary file and "
                "renamed into place only when complete, and the temporary was removed. Free "
                "some space, or give the run's output folder on another disk, then continue "
                "with --resume from its last checkpoint."
            ) from None

    # -- reading ---------------------------------------------------------------------------

    def load(self, path, *args, **kwargs):
        self.needs_torchvision_config = False
        if path:
            url = urlparse(path)
            if not url.scheme:  # a local file: fvcore would only assert on a missing one
                check_file_exists(url._replace(query="").geturl())
        self._source = path
        try:
            loaded = super().load(path, *args, **kwargs)
        except OSError as e:  # urllib's URLError included: a download that failed
            if not path or not urlparse(path).scheme or isinstance(e, CheckpointError):
                raise
            raise CheckpointError(
                f"The weights {path} could not be downloaded ({e}). Nothing can be fetched "
                "from a machine without internet access: fetch the file where there is "
                "(python -c \"from detectron2.utils.file_io import PathManager; print("
                f"PathManager.get_local_path('{path}'))\"), copy it here and give its local "
                "path as MODEL.WEIGHTS (LazyConfig: train.init_checkpoint); docs/weights.md."
            ) from None
        finally:
            self._source = None
        if self.needs_torchvision_config and self._cfg is not None:
            check_config_for_torchvision_weights(self._cfg, path)
        return loaded

    def resume_or_load(self, path: str, *, resume: bool = True):
        """fvcore's: with ``resume`` and a ``last_checkpoint`` in ``save_dir``, the
        checkpoint it names (this run's own: its ``model``, whatever ``load_ema`` says) with
        all checkpointables; otherwise the model weights of ``path``."""
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            self._check_last_checkpoint(last)
            self._resuming = True
            try:
                return self.load(last)
            finally:
                self._resuming = False
        return self.load(path, checkpointables=[])

    def get_checkpoint_file(self) -> str:
        """fvcore's, with a ``last_checkpoint`` that is not text named with the fix."""
        try:
            return super().get_checkpoint_file()
        except UnicodeDecodeError:
            tag = os.path.join(self.save_dir, "last_checkpoint")
            raise CheckpointError(
                f"--resume: {tag} is not text: it should hold the name of this run's latest "
                "checkpoint (e.g. model_0000599.pth). Fix: write that name into it, delete "
                "it, or start without --resume; the checkpoints themselves are untouched."
            ) from None

    def _check_last_checkpoint(self, last: str) -> None:
        """``last_checkpoint`` must name a file that exists (a local save_dir)."""
        if urlparse(last).scheme or os.path.isfile(last):
            return
        tag = os.path.join(self.save_dir, "last_checkpoint")
        named = os.path.relpath(last, self.save_dir)
        named = "" if named == "." else named
        existing = []
        if os.path.isdir(self.save_dir):
            existing = sorted(f for f in os.listdir(self.save_dir) if f.endswith(".pth"))
        raise CheckpointNotFoundError(
            f"--resume: {tag} names {named or 'no file (it is empty)'}, which does not exist "
            f"({last}). Fix: restore that file, edit {tag} to name a checkpoint that exists "
            f"({first_few(existing) if existing else f'there is no .pth in {self.save_dir}'}) "
            "or delete it, or start without --resume."
        )

    def _load_file(self, filename):
        source = self._source or filename
        pickled = filename.endswith((".pkl", ".pyth"))  # Detectron2's readers
        try:  # .pth: weights_only, plus the official ADN checkpoints' argparse.Namespace
            loaded = super()._load_file(filename) if pickled else torch_load(filename)
        except Exception as e:  # corrupt files fail in many ways: zip, pickle, EOF, key
            raise read_error(source, e, converter=CONVERTER) from e
        loaded = raw = self._select_weights(loaded, source)
        if pickled and loaded.get("__author__") == "Caffe2":
            raw = loaded["model"]  # what the file held: Detectron2 wraps Caffe2 pickles
        elif not pickled and isinstance(loaded, dict) and "model" not in loaded:
            loaded = {"model": loaded}  # as Detectron2 does

        model_entry = loaded.get("model") if isinstance(loaded, dict) else None
        state_dict = unwrap_state_dict(model_entry)
        if state_dict is None:
            raise no_state_dict_error(
                source,
                raw,
                "Fix: point MODEL.WEIGHTS at a model checkpoint (e.g. output/model_final.pth, "
                "or ImageNet weights).",
            )
        layout = detect_layout(state_dict)
        if detect_vit_layout(state_dict):
            loaded = self._convert_vit(state_dict, source)
        elif layout in (ADN, TORCHVISION):
            loaded = convert_torchvision_checkpoint(state_dict, source)
            self.logger.info(
                f"Read '{source}' as {loaded['__author__']} ResNet weights (torchvision "
                f"layout, {loaded['num_skip_norms']} skip norms); renamed to Detectron2's names."
            )
        else:
            # A bare Detectron2 ResNet whose names are not the model's ("res2.0..." for
            # "backbone.bottom_up.res2.0..."): Detectron2's heuristics find its place.
            if (
                layout == DETECTRON2_BACKBONE
                and not loaded.get("matching_heuristics")
                and not set(state_dict) <= set(self.model.state_dict())
            ):
                loaded["matching_heuristics"] = True
            loaded["model"] = state_dict  # the same, or unnested / without "module."
        self.needs_torchvision_config = bool(loaded.get("torchvision_style", False))
        return loaded

    def _select_weights(self, loaded, source: str):
        """The ``model`` weights, or with ``load_ema`` the ``model_ema`` ones (logged)."""
        if self.load_ema and not self._resuming:
            if isinstance(loaded, dict) and loaded.get("ema_weights"):
                self.logger.info(
                    f"'{source}' holds EMA weights (converted with --ema): loading them "
                    "(MODEL.ADN.LOAD_EMA: True)."
                )
                return loaded
            selected = select_weights(loaded, source, ema=True, option="MODEL.ADN.LOAD_EMA")
            self.logger.info(
                f"Loading the EMA weights ('{EMA_ENTRY}', {len(selected['model'])} tensors) "
                f"of '{source}' (MODEL.ADN.LOAD_EMA: True)."
            )
            return selected
        if has_ema(loaded):
            self.logger.info(
                f"Loading the 'model' weights of '{source}' (MODEL.ADN.LOAD_EMA: False). It "
                f"also holds '{EMA_ENTRY}', the EMA weights of a --model-ema run (the official "
                "ADN accuracies are those of the EMA weights): set MODEL.ADN.LOAD_EMA True to "
                "load them instead."
            )
        return loaded

    def _convert_vit(self, state_dict, source: str) -> dict:
        """Official ViT-ADN / torchvision ViT weights, converted for the model's ViT-ADN
        (skip LayerNorms copied from the main ones under the "copy" policy)."""
        from ..modeling.backbone.vit_adn import ViTADN  # the checkpointer must not need it

        vit = next((m for m in self.model.modules() if isinstance(m, ViTADN)), None)
        if vit is None:
            raise CheckpointMismatchError(
                f"Checkpoint '{source}' holds ViT weights (torchvision layout), but the model "
                "has no ViT-ADN backbone. Fix: point MODEL.WEIGHTS at weights of the model's "
                "architecture, or build a ViT-ADN model (MODEL.BACKBONE.NAME: "
                "build_vit_adn_sfp_backbone, e.g. configs/mask_rcnn_ada_vit_b.yaml) for these "
                f"weights ({CONVERTER} converts them to a .pkl)."
            )
        return convert_vit_checkpoint(
            state_dict,
            source,
            expected=model_vit_structure(vit),
            num_mandatory_per_group=vit.num_mandatory_per_group,
            skip_norm_init=self.skip_norm_init,
        )

    # -- loading ---------------------------------------------------------------------------

    def _load_model(self, checkpoint):
        heuristics = bool(checkpoint.get("matching_heuristics", False))
        source_state = checkpoint["model"]
        if heuristics and checkpoint.get("__author__") == "Caffe2":
            # Detectron2 renames Caffe2 blobs while matching; the same renaming gives the
            # names its unmatched keys are reported under.
            names = convert_basic_c2_names(list(source_state))
            source_shapes = {n: tuple(v.shape) for n, v in zip(names, source_state.values())}
        else:
            source_shapes = {k: tuple(v.shape) for k, v in source_state.items()}

        # per-depth BN statistics (re-estimated after training) are buffers that exist only
        # once made: make those the checkpoint holds, so that they load like any other
        prepare_depth_bn_buffers(self.model, source_state.keys())
        incompatible = super()._load_model(checkpoint)
        refresh_depth_bn_statistics(self.model)  # the current depth takes its statistics
        if heuristics:  # BN's batch counter carries no weights; MSRA / FrozenBN lack it
            for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
                keys[:] = [k for k in keys if not k.endswith(_NUM_BATCHES)]
        if self.strict_backbone:
            self._check_backbone(incompatible, heuristics, source_shapes)
        self._init_skip_norms(incompatible)
        if self.require_all_weights:
            self._check_all_loaded(incompatible)
        return incompatible

    def _check_all_loaded(self, incompatible) -> None:
        """Stop if a weight of the model keeps its random initialisation."""
        shapes = list(incompatible.incorrect_shapes)
        reshaped = {k for k, _, _ in shapes}
        missing = [k for k in incompatible.missing_keys
                   if not _ignorable(k) and k not in reshaped]
        if not (missing or shapes):
            return
        parts = collections.Counter(".".join(k.split(".")[:2]) for k in missing + sorted(reshaped))
        lines = [f"{len(missing) + len(shapes)} weights would keep their random "
                 f"initialisation, in {', '.join(f'{p} ({n})' for p, n in parts.items())}"]
        if shapes:
            shown = [f"{k}: {c} in the checkpoint, {m} in the model" for k, c, m in shapes]
            lines.append(f"{len(shapes)} have other shapes than in the model: {first_few(shown, 3)}")
        classes = [f"{what} {n}" for what, n in _checkpoint_classes(shapes)]
        fix = ("give the checkpoint of this config's model (the same architecture and "
               "number of classes)")
        if classes:
            fix += f"; the checkpoint's heads are for {', '.join(classes)}"
        raise CheckpointMismatchError(
            f"Checkpoint '{self._source}' does not hold the whole model; evaluating or "
            "deploying it would run random layers:\n  - " + "\n  - ".join(lines)
            + f"\nFix: {fix}; or pass --allow-random-weights to run them at random on purpose."
        )

    def _resnet_prefixes(self) -> List[str]:
        """State-dict prefixes of the outermost ResNets in the model ("backbone.bottom_up.")."""
        names = [n for n, m in self.model.named_modules() if isinstance(m, ResNet)]
        outer = [n for n in names if not any(o != n and n.startswith(o + ".") for o in names)]
        return [n + "." if n else "" for n in outer]

    def _check_backbone(self, incompatible, heuristics: bool, source_shapes: Dict) -> None:
        prefixes = tuple(self._resnet_prefixes())
        if not prefixes:
            return  # no ResNet (e.g. a ViT backbone): Detectron2's behaviour
        model_state = self.model.state_dict()
        backbone = {k: v for k, v in model_state.items() if k.startswith(prefixes)}
        missing = [k for k in incompatible.missing_keys if k in backbone and not _ignorable(k)]
        shapes = [s for s in incompatible.incorrect_shapes if s[0].startswith(prefixes)]
        if heuristics:
            # Unmatched keys keep the checkpoint's names ("res4.6.conv1.weight").
            unexpected = [k for k in incompatible.unexpected_keys if is_resnet_key(k)]
            # Detectron2's matching skips a key of another shape, leaving it unexpected and
            # its model key missing: report it as the shape mismatch it is.
            # (Searched among all backbone keys: FrozenBN fills absent running statistics,
            # so their model keys are not reported missing.)
            for key in list(unexpected):
                target = next((m for m in backbone if m == key or m.endswith("." + key)), None)
                if target is not None and key in source_shapes:
                    shapes.append((key, source_shapes[key], tuple(backbone[target].shape)))
                    unexpected.remove(key)
                    if target in missing:
                        missing.remove(target)
            checkpoint_keys = list(source_shapes)
        else:
            unexpected = [k for k in incompatible.unexpected_keys if k.startswith(prefixes)]
            checkpoint_keys = [k for k in source_shapes if k.startswith(prefixes)]
        unexpected = [k for k in unexpected if not _ignorable(k)]
        if not (missing or shapes or unexpected):
            return

        lines = []
        if shapes:
            shown = [f"{k}: {c} in the checkpoint, {m} in the model" for k, c, m in shapes]
            lines.append(
                f"{len(shapes)} weights have other shapes than in the model: {first_few(shown, 3)}"
            )
        if missing:
            lines.append(f"{len(missing)} backbone weights are missing: {first_few(missing)}")
        if unexpected:
            lines.append(
                f"{len(unexpected)} backbone weights of the checkpoint have no place in the "
                f"model: {first_few(unexpected)}"
            )
        checkpoint_net = resnet_structure(checkpoint_keys)
        model_net = resnet_structure(k for k in backbone if not _ignorable(k))
        if checkpoint_net is None:
            about = (
                "The checkpoint holds no ResNet weights (its keys begin "
                f"{first_few(sorted(source_shapes), 3)}): it is for another architecture."
            )
            fix = "point MODEL.WEIGHTS at weights of the model's architecture"
        else:
            about = f"The checkpoint holds {checkpoint_net}; the model is {model_net}."
            fix = "point MODEL.WEIGHTS at weights of the model's depth"
            if checkpoint_net.depth:
                fix += (
                    f", or build the checkpoint's network (MODEL.RESNETS.DEPTH: "
                    f"{checkpoint_net.depth}"
                    + ("" if checkpoint_net.bottleneck else ", MODEL.RESNETS.RES2_OUT_CHANNELS: 64")
                    + ")"
                )
        raise CheckpointMismatchError(
            f"Checkpoint '{self._source}' does not fit the model's backbone "
            f"({', '.join(p.rstrip('.') or '<model>' for p in prefixes)}); loading stops "
            "rather than run a half-loaded backbone:\n  - "
            + "\n  - ".join(lines)
            + f"\n{about}\nFix: {fix}."
        )

    def _skip_norms_with_a_place(self, incompatible, switchable) -> List[str]:
        """Split the checkpoint's unexpected skip-norm tensors. Those whose main norm lies
        in a ResNet with skip norms had a place there: returned, a mismatch. The others are
        dropped from ``unexpected_keys`` with one log line: their blocks have no skip norm
        in this model (official ADN weights into a plain ResNet, whose super-net norms are
        what it needs; or res5 of a C4 model, which runs in the ROI heads)."""
        extra = [k for k in incompatible.unexpected_keys if is_skip_norm_key(k)]
        if not extra:
            return []
        adaptive = tuple(
            p for p in self._resnet_prefixes() if any(n.startswith(p) for n, _ in switchable)
        )
        adaptive_keys = [k for k in self.model.state_dict() if adaptive and k.startswith(adaptive)]

        def has_place(key: str) -> bool:
            main = key.replace(".norm_skip.", ".norm.")
            return any(m == main or m.endswith("." + main) for m in adaptive_keys)

        placed = [k for k in extra if has_place(k)]
        ignored = set(extra) - set(placed)
        if ignored:
            incompatible.unexpected_keys[:] = [
                k for k in incompatible.unexpected_keys if k not in ignored
            ]
            self.logger.info(
                f"Ignored {len(ignored)} skip-norm tensors of '{self._source}' (e.g. "
                f"{first_few(sorted(ignored), 2)}): their blocks have no skip norms in this "
                "model, which runs them at full depth with their main norms."
            )
        return placed

    def _init_skip_norms(self, incompatible) -> None:
        switchable = [
            (name, module)
            for name, module in self.model.named_modules()
            if isinstance(getattr(module, "norm_skip", None), nn.Module)
            and isinstance(getattr(module, "norm", None), nn.Module)
        ]
        extra = self._skip_norms_with_a_place(incompatible, switchable)
        if not switchable:
            return
        missing = set(incompatible.missing_keys)

        def skip_keys(name: str, module: nn.Module) -> List[str]:
            prefix = f"{name}.norm_skip." if name else "norm_skip."
            return [prefix + k for k in module.norm_skip.state_dict() if k != _NUM_BATCHES]

        def core(keys: List[str]) -> List[str]:
            # FrozenBN fills absent running statistics itself (zeros/ones, for Caffe2
            # weights), so only weight/bias tell whether the checkpoint had the norm.
            return [k for k in keys if not k.endswith(_RUNNING_STATS)] or keys

        absent, partial = [], []
        for name, module in switchable:
            keys = skip_keys(name, module)
            if all(k in missing for k in core(keys)):
                absent.append((name, module))
            elif any(k in missing for k in keys):
                partial.append(name)
        loaded_some = len(absent) < len(switchable)
        if (extra or partial or (absent and loaded_some)) and self.strict_backbone:
            absent_names = {n for n, _ in absent}
            model_keys = [n + ".norm_skip.weight" for n, _ in switchable]
            checkpoint_keys = extra + [
                n + ".norm_skip.weight" for n, _ in switchable if n not in absent_names
            ]
            checkpoint_split = mandatory_blocks_from_keys(checkpoint_keys)
            raise CheckpointMismatchError(
                f"Checkpoint '{self._source}' has skip norms for other blocks than the model's "
                f"mandatory blocks: {len(absent)} of the model's skip norms are not in it "
                f"({first_few(sorted(absent_names), 3)}), {len(extra)} of its skip-norm "
                f"tensors have no place in the model ({first_few(extra, 3)}). Mandatory "
                f"blocks per stage: {checkpoint_split} in the checkpoint, "
                f"{mandatory_blocks_from_keys(model_keys)} in the model. Fix: set "
                f"MODEL.ADN.NUM_MANDATORY_BLOCKS: {checkpoint_split} (and the checkpoint's "
                "MODEL.RESNETS.DEPTH)."
            )
        if not absent:
            return
        if self.skip_norm_init == "error":
            raise SkipNormsMissingError(
                f"Checkpoint '{self._source}' has no skip norms for {len(absent)} of the "
                f"model's skip norms (norm_skip), e.g. {first_few([n for n, _ in absent], 3)}, "
                "and MODEL.ADN.SKIP_NORM_INIT is 'error'. It is an ordinary (non-ADN) "
                "checkpoint. Fix: load an official ADN or adadet checkpoint, or set "
                "MODEL.ADN.SKIP_NORM_INIT: 'copy' to start each skip norm as a copy of its "
                "main norm."
            )
        with torch.no_grad():
            for name, module in absent:
                module.norm_skip.load_state_dict(module.norm.state_dict())
        copied = {k for n, m in absent for k in skip_keys(n, m)}
        incompatible.missing_keys[:] = [
            k
            for k in incompatible.missing_keys
            if k not in copied and not (is_skip_norm_key(k) and k.endswith(_NUM_BATCHES))
        ]
        self.logger.info(
            f"Initialised {len(absent)} skip norms (norm_skip) as copies of their main norms "
            f"(weights and running statistics): '{self._source}' has none, as ordinary "
            "(non-ADN) ResNet weights do; training makes them diverge (MODEL.ADN."
            "SKIP_NORM_INIT: copy; set it to 'error' to refuse such checkpoints)."
        )
