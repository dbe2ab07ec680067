"""The skip switches of an adaptive-depth model, and depth scopes that make a depth
choice local to one thread (or asyncio task).

Every switch of a model (a stage's, a refinement's, and the record of each adaptive
module's setting) is a :class:`SkipSwitch`-like value with a default that every thread
sees. Inside :func:`depth_scope`, writes to them go to the scope instead (a
``contextvars.ContextVar``, so each thread and each asyncio task has its own) and reads
see the scope's values first: ``adadet.using_depth`` opens one, so that a thread runs
its own setting whatever other threads choose, while ``adadet.set_depth`` outside any
scope changes the default.
"""
import contextlib
from contextvars import ContextVar
from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["SkipSwitch", "depth_scope", "scoped_get", "scoped_set"]

# id(owner) -> (owner, value): the owner is kept so that its id cannot be reused while
# the scope lives
_SCOPE: "ContextVar[Optional[Dict[int, Tuple[Any, Any]]]]" = ContextVar(
    "adadet_depth_scope", default=None)


def scoped_get(owner: Any, default: Any) -> Any:
    """``owner``'s value in the innermost depth scope of this context, else ``default``."""
    scope = _SCOPE.get()
    if scope:
        entry = scope.get(id(owner))
        if entry is not None:
            return entry[1]
    return default


def scoped_set(owner: Any, value: Any) -> bool:
    """Give ``owner`` ``value`` in this context's depth scope; False if none is open (the
    caller then changes its default)."""
    scope = _SCOPE.get()
    if scope is None:
        return False
    scope[id(owner)] = (owner, value)
    return True


@contextlib.contextmanager
def depth_scope() -> Iterator[None]:
    """Inside the block, depth changes made by this thread or task stay in it (a nested
    scope starts from its outer one's values) and end with it."""
    outer = _SCOPE.get()
    token = _SCOPE.set(dict(outer) if outer else {})
    try:
        yield
    finally:
        _SCOPE.reset(token)


class SkipSwitch:
    """Whether one stage (or refinement) currently skips. Shared by the stage and its
    switchable convs, so switching a stage is one write, whatever the number of blocks;
    the write goes to the current :func:`depth_scope` if one is open."""

    __slots__ = ("_active",)

    def __init__(self, active: bool = False):
        self._active = bool(active)

    @property
    def active(self) -> bool:
        return scoped_get(self, self._active)

    @active.setter
    def active(self, value: bool) -> None:
        if not scoped_set(self, bool(value)):
            self._active = bool(value)

    def __repr__(self) -> str:
        return f"SkipSwitch(active={self.active})"
