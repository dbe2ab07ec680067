"""Depth settings: which stages skip their skippable sub-path.

A depth setting holds one flag per stage, written as a string with one letter per stage
(res2..res5 for ResNet, the 4 block groups for ViT): ``T`` = this stage skips its
skippable sub-path, ``F`` = it runs every block. ``"FFFF"`` is the full super-net,
``"TTTT"`` the smallest base-net, ``"TFFF"`` skips only res2's tail. The aliases
``"super"`` and ``"base"`` name the two ends.

Switching the depth of a built model only changes which blocks run and which norm set the
mandatory blocks use: no rebuild, no weight copy.
"""
import contextlib
import itertools
import weakref
from collections import OrderedDict
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from torch.utils.hooks import RemovableHandle

SkipFlags = Tuple[bool, ...]
#: ``hook(module, depth)``, called at the end of :meth:`AdaptiveDepthModule.set_depth`.
DepthChangeHook = Callable[["AdaptiveDepthModule", str], None]
DEPTH_ALIASES = {"super": "F", "base": "T"}
#: The default chain evaluated per depth (``TEST.ADN.DEPTHS``): one more stage skips each step.
DEFAULT_EVAL_CHAIN = ("FFFF", "TFFF", "TTFF", "TTTF", "TTTT")


def _depth_format(num_stages: int) -> str:
    """What a depth setting looks like, for error messages."""
    return (
        f"a depth setting is a string of {num_stages} letters, one per stage, each 'T' (skip "
        f"that stage's skippable blocks) or 'F' (run them), e.g. {'F' * num_stages!r} for the "
        f"super-net, {'T' * num_stages!r} for the base-net, or the aliases 'super' / 'base'; "
        f"a sequence of {num_stages} bools (True = skip) or of {num_stages} single letters "
        f"'T'/'F' is accepted too"
    )


def _is_bool(value) -> bool:
    """A real bool: Python's or numpy's (not 0/1, not a string, not None)."""
    if isinstance(value, bool):
        return True
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")


def _is_letter(value) -> bool:
    return isinstance(value, str) and value.upper() in ("T", "F")


def _sequence_flags(setting, num_stages: int) -> SkipFlags:
    """Skip flags of a sequence of bools or of single 'T'/'F' letters; anything else raises."""
    if isinstance(setting, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"Invalid depth setting {setting!r}: bytes are not read as letters; decode them "
            f"(e.g. {bytes(setting).decode(errors='replace')!r}): {_depth_format(num_stages)}."
        )
    try:
        entries = list(setting)
    except TypeError:
        raise TypeError(
            f"Invalid depth setting {setting!r} ({type(setting).__name__}): "
            f"{_depth_format(num_stages)}."
        ) from None
    if all(_is_bool(entry) for entry in entries):
        flags = tuple(bool(entry) for entry in entries)
    elif all(_is_letter(entry) for entry in entries):
        flags = tuple(entry.upper() == "T" for entry in entries)
    else:
        raise TypeError(
            f"Invalid depth setting {entries!r}: its entries must be all bools (True = skip) or "
            f"all single letters 'T'/'F', not numbers, None, words or a mix; "
            f"{_depth_format(num_stages)}."
        )
    if len(flags) != num_stages:
        raise ValueError(
            f"Depth setting {entries!r} has {len(flags)} flags; this backbone has {num_stages} "
            f"stages, so give one flag per stage: {_depth_format(num_stages)}."
        )
    return flags


def parse_depth(setting: Union[str, Sequence[bool]], num_stages: int = 4) -> SkipFlags:
    """Turn a depth setting into skip flags (True = that stage skips).

    Accepted: a string ("TFFF", "super", "base"), a sequence of real bools (Python's or
    numpy's), or a sequence of single "T"/"F" letters (``list("TFFF")``). Anything else
    (None, bytes, numbers, mixed sequences) raises a TypeError saying what a depth setting
    looks like, rather than being read by truthiness ("F" is a true string).
    """
    if setting is None:
        raise TypeError(
            f"No depth setting was given (None, e.g. MODEL.ADN.DEPTH None): "
            f"{_depth_format(num_stages)}."
        )
    if not isinstance(setting, str):
        return _sequence_flags(setting, num_stages)
    text = setting.strip()
    if text.lower() in DEPTH_ALIASES:
        return (DEPTH_ALIASES[text.lower()] == "T",) * num_stages
    text = text.upper()
    if len(text) != num_stages or any(letter not in "TF" for letter in text):
        raise ValueError(
            f"Invalid depth setting {setting!r}: expected {num_stages} letters, one per stage, "
            f"each 'T' (skip that stage's skippable blocks) or 'F' (run them), e.g. "
            f"{'F' * num_stages!r} for the super-net, {'T' * num_stages!r} for the base-net, "
            f"or the aliases 'super' / 'base'."
        )
    return tuple(letter == "T" for letter in text)


def depth_name(flags: Sequence[bool]) -> str:
    """The canonical string of skip flags, e.g. (True, False, False, False) -> 'TFFF'."""
    return "".join("T" if flag else "F" for flag in flags)


def normalize_depth(setting: Union[str, Sequence[bool]], num_stages: int = 4) -> str:
    """Validate a depth setting and return its canonical string ('super' -> 'FFFF')."""
    return depth_name(parse_depth(setting, num_stages))


def all_depths(num_stages: int = 4) -> List[str]:
    """Every depth setting, from the super-net 'FF..F' to the base-net 'TT..T'."""
    return [depth_name(flags) for flags in itertools.product((False, True), repeat=num_stages)]


def mixed_depths(num_stages: int = 4) -> List[str]:
    """Every setting but the super-net and the base-net (the 14 mixed ones of 4 stages)."""
    return all_depths(num_stages)[1:-1]


def expand_depth_list(settings: Union[str, Sequence[str]], num_stages: int = 4) -> List[str]:
    """Validate a list of depth settings from a config; ``"all"`` (or ``["all"]``) gives all.

    Raises ValueError naming the bad or duplicated entries.
    """
    if isinstance(settings, str):
        settings = [settings]
    if [s.lower() for s in settings] == ["all"]:
        return all_depths(num_stages)
    if not settings:
        raise ValueError("The list of depth settings is empty: give at least one, e.g. ['FFFF'].")
    names = [normalize_depth(s, num_stages) for s in settings]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Depth settings {list(settings)} name {duplicates} more than once "
            "(aliases included: 'super' = 'FFFF', 'base' = 'TTTT'); list each setting once."
        )
    return names


class AdaptiveDepthModule(nn.Module):
    """Interface of a backbone whose stages can skip their skippable sub-paths.

    Subclasses define ``num_adaptive_stages``, ``_apply_skip_flags(flags)`` and
    ``stage_outputs()``.
    """

    num_adaptive_stages: int = 4

    def stage_outputs(self) -> "Dict[str, nn.Module]":
        """Stage name -> the module whose forward output is that stage's output, an
        (N, C, H, W) map, at any depth (what self-distillation can name in
        ``MODEL.ADN.DISTILL.FEATURES``, besides the backbone's outputs)."""
        raise NotImplementedError

    @property
    def depth(self) -> str:
        return depth_name(self._skip_flags)

    @depth.setter
    def depth(self, setting: Union[str, Sequence[bool]]) -> None:
        self.set_depth(setting)

    @property
    def skip_flags(self) -> SkipFlags:
        return self._skip_flags

    def set_depth(self, setting: Union[str, Sequence[bool]]) -> None:
        flags = parse_depth(setting, self.num_adaptive_stages)
        self._skip_flags = flags
        self._apply_skip_flags(flags)
        name = depth_name(flags)
        for hook in self.depth_change_hooks:
            hook(self, name)

    def register_depth_change_hook(self, hook: "DepthChangeHook") -> RemovableHandle:
        """Call ``hook(module, depth)`` at the end of every :meth:`set_depth` of this module
        (also one that keeps the current setting), ``depth`` the canonical setting string
        (``"TTTF"``); returns a handle whose ``remove()`` unregisters it.

        Any other state that follows the depth registers here, so that this module knows
        none of it (per-depth BN statistics: :mod:`adadet.calibration.depth_bn_statistics`).
        The hooks belong to this module alone: a deep copy or an unpickled model has copies
        of them (so a hook must be picklable: a module-level function or an object of a
        module-level class, no lambda), and tracing never runs them.
        """
        hooks = self.__dict__.get("_depth_change_hooks")
        if hooks is None:
            hooks = self._depth_change_hooks = OrderedDict()
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    @property
    def depth_change_hooks(self) -> "Tuple[DepthChangeHook, ...]":
        """The registered depth-change hooks, in the order they are called."""
        return tuple(self.__dict__.get("_depth_change_hooks", {}).values())

    def _apply_skip_flags(self, flags: SkipFlags) -> None:
        raise NotImplementedError

    def depth_independent_stem(self) -> "Optional[Tuple[object, str]]":
        """``(owner, name)`` of the method that computes the part of the forward before the
        first adaptive stage (ResNet's stem, ViT's patch and position embeddings), whose
        result is the same at every depth for the same input; None if there is none.
        Self-distillation computes it once per iteration for both passes."""
        return None


# model -> its adaptive-depth modules: found once, so that switching the depth of a whole
# detector costs the same whatever its size (weak keys: no model is kept alive by this).
_ADAPTIVE_MODULES: "weakref.WeakKeyDictionary[nn.Module, List[AdaptiveDepthModule]]" = (
    weakref.WeakKeyDictionary()
)


def adaptive_modules(model: nn.Module) -> List[AdaptiveDepthModule]:
    """The adaptive-depth backbones inside ``model`` (unwrapping DistributedDataParallel).

    Looked up once per model; a model whose backbone is replaced after its first depth
    switch keeps the modules found then.
    """
    model = getattr(model, "module", model)
    found = _ADAPTIVE_MODULES.get(model)
    if found is None:
        found = [m for m in model.modules() if isinstance(m, AdaptiveDepthModule)]
        if not found:
            raise ValueError(
                f"{type(model).__name__} has no adaptive-depth backbone: build it with an ADN "
                "backbone (e.g. MODEL.BACKBONE.NAME: build_resnet_adn_fpn_backbone)."
            )
        _ADAPTIVE_MODULES[model] = found
    return found


def set_depth(model: nn.Module, setting: Union[str, Sequence[bool]]) -> str:
    """Run ``model`` at ``setting`` from now on; returns the canonical setting string."""
    name = None
    for module in adaptive_modules(model):
        module.set_depth(setting)
        name = module.depth
    return name


def get_depth(model: nn.Module) -> str:
    return adaptive_modules(model)[0].depth


@contextlib.contextmanager
def using_depth(model: nn.Module, setting: Union[str, Sequence[bool]]) -> Iterator[str]:
    """Run ``model`` at ``setting`` inside the block, then restore the previous setting.

    >>> with using_depth(model, "TTTT"):
    ...     outputs = model(inputs)
    """
    modules = adaptive_modules(model)
    previous = [m.skip_flags for m in modules]
    try:
        for module in modules:
            module.set_depth(setting)
        yield modules[0].depth
    finally:
        for module, flags in zip(modules, previous):
            module.set_depth(flags)
