"""The pieces of error messages: a long list shown by its first few items."""

from typing import Iterable


def first_few(items: Iterable, count: int = 5) -> str:
    """``'a, b, c, ... (12 in all)'``: enough items to recognise the list, and its length."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:count])
    return shown + (f", ... ({len(items)} in all)" if len(items) > count else "")
