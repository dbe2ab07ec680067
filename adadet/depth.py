"""Depth settings: which stages skip their skippable sub-path.

A depth setting holds one flag per stage, written as a string with one letter per stage
(res2..res5 for ResNet, the 4 block groups for ViT): ``T`` = this stage skips its
skippable sub-path, ``F`` = it runs every block. ``"FFFF"`` is the full super-net,
``"TTTT"`` the smallest base-net, ``"TFFF"`` skips only res2's tail. The aliases
``"super"`` and ``"base"`` name the two ends.

A detector whose neck and heads adapt too (e.g. ``SkippableFPN``, ``SkippableRPNHead``)
has one more letter per adaptive part after the backbone's, in the order of
:class:`DepthLayout` (the backbone, then the parts as the detector holds them: FPN, RPN
head, mask head): ``"TTTTFTF"`` = the backbone's base-net, the FPN and the mask head
skip. A setting of the backbone's letters alone runs every other part in full, so that
``"TTFF"`` means the same on every detector.

Switching the depth of a built model only changes which blocks run and which norm set the
mandatory blocks use: no rebuild, no weight copy.
"""
import contextlib
import itertools
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

from .layers.skip_switch import depth_scope, scoped_get, scoped_set

SkipFlags = Tuple[bool, ...]
#: ``hook(module, depth)``, called at the end of :meth:`AdaptiveDepthModule.set_depth`.
DepthChangeHook = Callable[["AdaptiveDepthModule", str], None]
DEPTH_ALIASES = {"super": "F", "base": "T"}
#: words that stand for a list of settings: every one, or all but the two ends
DEPTH_LIST_WORDS = ("all", "mixed")
#: The part of a detector whose letters come first in a depth setting.
BACKBONE_PART = "backbone"


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


def depth_chain(num_flags: int = 4) -> List[str]:
    """FFFF -> TFFF -> ... -> TTTT for settings of ``num_flags`` letters: one more part skips
    at each step, the backbone's stages first, then the neck and heads in their order."""
    return ["T" * i + "F" * (num_flags - i) for i in range(num_flags + 1)]


#: The default chain evaluated per depth (``TEST.ADN.DEPTHS``): FFFF, TFFF, TTFF, TTTF, TTTT.
DEFAULT_EVAL_CHAIN = tuple(depth_chain(4))


def expand_depth_list(settings: Union[str, Sequence[str]], num_stages: int = 4) -> List[str]:
    """Validate a list of depth settings from a config; ``"all"`` (or ``["all"]``) gives all,
    ``"mixed"`` all but the two ends. A backbone's alone: :meth:`DepthLayout.expand`.

    Raises ValueError naming the bad or duplicated entries.
    """
    return DepthLayout(((BACKBONE_PART, num_stages),)).expand(settings)


class AdaptiveDepthModule(nn.Module):
    """Interface of a module whose stages (or refinements) can skip their skippable
    sub-paths.

    Subclasses define ``num_adaptive_stages``, ``_apply_skip_flags(flags)`` and, for a
    backbone, ``stage_outputs()``. ``depth_part`` names the part of the detector whose
    letters of a depth setting the module takes (:class:`DepthLayout`): every backbone
    module takes the backbone's letters; a neck or head part takes its own.
    ``_apply_skip_flags`` writes what the forward reads through
    :class:`~adadet.layers.SkipSwitch` objects, so that a depth chosen inside
    :func:`using_depth` stays with the thread that chose it.
    """

    num_adaptive_stages: int = 4
    depth_part: str = BACKBONE_PART

    def stage_outputs(self) -> "Dict[str, nn.Module]":
        """Stage name -> the module whose forward output is that stage's output, an
        (N, C, H, W) map, at any depth (what self-distillation can name in
        ``MODEL.ADN.DISTILL.FEATURES``, besides the backbone's outputs)."""
        raise NotImplementedError

    @property
    def depth(self) -> str:
        return depth_name(self.skip_flags)

    @depth.setter
    def depth(self, setting: Union[str, Sequence[bool]]) -> None:
        self.set_depth(setting)

    @property
    def skip_flags(self) -> SkipFlags:
        return scoped_get(self, self.__dict__["_skip_flags"])

    def set_depth(self, setting: Union[str, Sequence[bool]]) -> None:
        """Run at ``setting``: from now on for every thread, or, inside
        :func:`using_depth` (a depth scope), for this thread until the block ends."""
        flags = parse_depth(setting, self.num_adaptive_stages)
        if not scoped_set(self, flags) or "_skip_flags" not in self.__dict__:
            self.__dict__["_skip_flags"] = flags
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


def _num_entries(setting) -> Optional[int]:
    """How many letters or flags ``setting`` spells (None for an alias or a non-sequence)."""
    if isinstance(setting, str):
        text = setting.strip()
        return None if text.lower() in DEPTH_ALIASES else len(text)
    try:
        return len(setting)
    except TypeError:
        return None


@dataclass(frozen=True)
class DepthLayout:
    """Which letters of a depth setting belong to which part of a detector.

    ``parts`` holds ``(part name, number of letters)``: the backbone first, then each
    adaptive neck or head part in the order the detector holds it. A setting gives every
    letter, or only the backbone's (every other part then runs in full); the aliases
    ``"super"`` / ``"base"`` give all letters ``F`` / ``T``. Canonical settings have every
    letter, so a backbone-only detector's settings are what they always were.
    """

    parts: Tuple[Tuple[str, int], ...]

    @property
    def num_flags(self) -> int:
        return sum(count for _, count in self.parts)

    @property
    def num_backbone_flags(self) -> int:
        return self.parts[0][1]

    def describe(self) -> str:
        """The layout in words, for messages: "4 letters: backbone (4), fpn (1)"."""
        return f"{self.num_flags} letters: " + ", ".join(f"{n} ({c})" for n, c in self.parts)

    def parse(self, setting: Union[str, Sequence[bool]]) -> SkipFlags:
        """The skip flags of every letter (True = skip); a backbone-only setting runs the
        other parts in full. Raises like :func:`parse_depth`, naming this layout."""
        if len(self.parts) == 1:
            return parse_depth(setting, self.num_flags)
        backbone = self.num_backbone_flags
        if _num_entries(setting) == backbone:
            return parse_depth(setting, backbone) + (False,) * (self.num_flags - backbone)
        try:
            return parse_depth(setting, self.num_flags)
        except ValueError as e:
            raise ValueError(
                f"{e} This detector's settings have {self.describe()}; a setting of the "
                f"backbone's {backbone} letters alone runs every other part in full."
            ) from None

    def normalize(self, setting: Union[str, Sequence[bool]]) -> str:
        return depth_name(self.parse(setting))

    def split(self, flags: SkipFlags) -> Dict[str, SkipFlags]:
        """Part name -> its flags."""
        out, start = {}, 0
        for name, count in self.parts:
            out[name] = tuple(flags[start : start + count])
            start += count
        return out

    def part_setting(self, setting: Union[str, Sequence[bool]], part: str) -> str:
        """The letters of ``part`` in ``setting``: "TTFF" of "TTFFTFT" for the backbone."""
        return depth_name(self.split(self.parse(setting))[part])

    def all(self) -> List[str]:
        return all_depths(self.num_flags)

    def expand(self, settings: Union[str, Sequence[str]]) -> List[str]:
        """:func:`expand_depth_list` for this layout: ``"all"`` gives every setting of
        every letter, ``"mixed"`` all but the super-net and the base-net (the sandwich
        rule's draws); each entry is made canonical."""
        if isinstance(settings, str):
            settings = [settings]
        words = [str(s).lower() for s in settings]
        if words == ["all"]:
            return self.all()
        if words == ["mixed"]:
            return self.all()[1:-1]
        if not settings:
            raise ValueError(
                f"The list of depth settings is empty: give at least one, e.g. "
                f"[{'F' * self.num_flags!r}]."
            )
        names = [self.normalize(s) for s in settings]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            backbone = self.num_backbone_flags
            backbone_only = (
                f"; a backbone-only setting runs the rest in full, {'T' * backbone!r} = "
                f"{'T' * backbone + 'F' * (self.num_flags - backbone)!r}"
                if len(self.parts) > 1 else ""
            )
            raise ValueError(
                f"Depth settings {list(settings)} name {duplicates} more than once (aliases "
                f"included: 'super' = {'F' * self.num_flags!r}, 'base' = "
                f"{'T' * self.num_flags!r}{backbone_only}); list each setting once."
            )
        return names


# model -> its adaptive-depth modules: found once, so that switching the depth of a whole
# detector costs the same whatever its size (weak keys: no model is kept alive by this).
_ADAPTIVE_MODULES: "weakref.WeakKeyDictionary[nn.Module, List[AdaptiveDepthModule]]" = (
    weakref.WeakKeyDictionary()
)


def adaptive_modules(model: nn.Module) -> List[AdaptiveDepthModule]:
    """The adaptive-depth modules inside ``model`` (unwrapping DistributedDataParallel):
    the backbone's first, then those of the neck and heads, in the model's order.

    Looked up once per model; a model whose backbone is replaced after its first depth
    switch keeps the modules found then.
    """
    model = getattr(model, "module", model)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"A depth is set on a model (a torch.nn.Module built with an ADN backbone), not "
            f"on {type(model).__name__} {model!r:.60}: pass the detector itself."
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError(
            "An exported model (TorchScript) holds only the blocks of the depth it was "
            "exported at, so its depth cannot change: export the setting you want "
            "(tools/export_model.py --depth ...), or set the depth of the model built from "
            "its config and checkpoint."
        )
    found = _ADAPTIVE_MODULES.get(model)
    if found is None:
        found = [m for m in model.modules() if isinstance(m, AdaptiveDepthModule)]
        backbones = [m for m in found if m.depth_part == BACKBONE_PART]
        if not backbones:
            raise ValueError(
                f"{type(model).__name__} has no adaptive-depth backbone: build it with an ADN "
                "backbone (e.g. MODEL.BACKBONE.NAME: build_resnet_adn_fpn_backbone)."
            )
        found = backbones + [m for m in found if m.depth_part != BACKBONE_PART]
        _ADAPTIVE_MODULES[model] = found
    return found


def backbone_modules(model: nn.Module) -> List[AdaptiveDepthModule]:
    """The adaptive-depth backbones inside ``model`` (the modules with stages whose
    outputs can be distilled)."""
    return [m for m in adaptive_modules(model) if m.depth_part == BACKBONE_PART]


def depth_layout(model: nn.Module) -> DepthLayout:
    """The letters of ``model``'s depth settings: :class:`DepthLayout`."""
    parts: "OrderedDict[str, int]" = OrderedDict()
    for module in adaptive_modules(model):
        count = parts.setdefault(module.depth_part, module.num_adaptive_stages)
        if count != module.num_adaptive_stages:
            raise ValueError(
                f"Two adaptive modules of the part {module.depth_part!r} have "
                f"{count} and {module.num_adaptive_stages} stages: the modules of one part "
                "take the same letters, so they need the same number of stages."
            )
    return DepthLayout(tuple(parts.items()))


def _part_flags(model: nn.Module, setting) -> "Tuple[str, List[Tuple[AdaptiveDepthModule, SkipFlags]]]":
    """The canonical setting and each adaptive module's flags of it."""
    layout = depth_layout(model)
    flags = layout.parse(setting)
    by_part = layout.split(flags)
    return depth_name(flags), [(m, by_part[m.depth_part]) for m in adaptive_modules(model)]


def set_depth(model: nn.Module, setting: Union[str, Sequence[bool]]) -> str:
    """Run ``model`` at ``setting`` from now on; returns the canonical setting string."""
    name, assignments = _part_flags(model, setting)
    for module, flags in assignments:
        module.set_depth(flags)
    return name


def get_depth(model: nn.Module) -> str:
    """The canonical setting ``model`` runs at: every part's letters."""
    parts: "OrderedDict[str, str]" = OrderedDict()
    for module in adaptive_modules(model):
        parts.setdefault(module.depth_part, module.depth)
    return "".join(parts.values())


# model -> the lock that its depth blocks hold while the model has depth-change hooks
# (per-depth BN statistics write the BN buffers, which every thread shares)
_HOOKED_MODEL_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = (
    weakref.WeakKeyDictionary()
)
_LOCKS_LOCK = threading.Lock()


def _hooked_model_lock(model: nn.Module, modules: Sequence[AdaptiveDepthModule]):
    if not any(m.depth_change_hooks for m in modules):
        return contextlib.nullcontext()
    model = getattr(model, "module", model)
    with _LOCKS_LOCK:
        lock = _HOOKED_MODEL_LOCKS.get(model)
        if lock is None:
            lock = _HOOKED_MODEL_LOCKS[model] = threading.RLock()
    return lock


@contextlib.contextmanager
def using_depth(model: nn.Module, setting: Union[str, Sequence[bool]]) -> Iterator[str]:
    """Run ``model`` at ``setting`` inside the block, in this thread (or asyncio task)
    only: other threads keep running theirs, and the setting :func:`set_depth` gave stays
    every thread's default outside such blocks. So one model (one set of weights) can
    serve several depths from a thread pool at once.

    >>> with using_depth(model, "TTTT"):
    ...     outputs = model(inputs)

    A model with per-depth BN statistics (:mod:`adadet.calibration.depth_bn_statistics`)
    loads them into its BN buffers, which all threads share: its blocks run one at a
    time (a lock per model), and a forward outside any block should not run beside them.
    """
    name, assignments = _part_flags(model, setting)
    modules = [m for m, _ in assignments]
    with _hooked_model_lock(model, modules), depth_scope():
        previous = [(m, m.skip_flags) for m in modules]
        try:
            for module, flags in assignments:
                module.set_depth(flags)
            yield name
        finally:
            for module, flags in previous:  # the hooks' state follows the outer setting
                module.set_depth(flags)
