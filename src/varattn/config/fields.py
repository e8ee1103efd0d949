"""A setting: a dataclass field that carries its own help text, range and choices.

Sections declare every field with :func:`setting`; validation and ``varattn config show`` read the
field's metadata, so a component that adds a section adds its checks and its documentation with it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

__all__ = ["Section", "setting", "positive", "count", "fraction", "help_of", "check_field"]


class Section:
    """What every section dataclass subclasses: its fields are made with :func:`setting`, and it may
    override :meth:`check` for rules that span fields."""

    def check(self, config: Any, fail: Callable[[str, str, str], None], origins: dict[str, str]) -> None:
        """Raise through ``fail(key, rule, fix)`` when a combination of settings is wrong; ``origins``
        maps the keys set by overrides to the override that set them."""


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, choices: Sequence[str] | Callable[[], Sequence[str]] = (),
            kind: str = "choice"):
    """A field with ``default`` whose meaning is ``help``; numbers must lie in ``[low, high]`` (each end
    open when ``low_open`` / ``high_open``; None: unbounded), text must be one of ``choices`` (a sequence,
    or a function returning one, for choices known only once everything is registered), each a ``kind``
    (named in the error)."""
    metadata = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
                "choices": choices, "kind": kind}
    return dataclasses.field(default=default, metadata=metadata)


def positive(default: Any, help: str, **bounds):
    """A number that must be above zero."""
    return setting(default, help, low=0, low_open=True, **bounds)


def count(default: Any, help: str, **bounds):
    """A number that must not be negative."""
    return setting(default, help, low=0, **bounds)


def fraction(default: float, help: str):
    """A probability-like number in [0, 1)."""
    return setting(default, help, low=0, high=1.0, high_open=True)


def help_of(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def _choices(field: dataclasses.Field) -> Sequence[str]:
    choices = field.metadata.get("choices", ())
    return choices() if callable(choices) else choices


def check_field(field: dataclasses.Field, value: Any) -> tuple[str, str] | None:
    """None when ``value`` suits ``field``; else ``(rule broken, how to fix it)``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number", f"give a number (default {field.default!r})"
    choices = _choices(field)
    if choices and value not in choices:
        return f"is not a {field.metadata.get('kind', 'choice')}", f"use one of {', '.join(choices)}"
    meta = field.metadata
    low, high = meta.get("low"), meta.get("high")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (low is None and high is None):
        return None
    low_ok = low is None or (value > low if meta["low_open"] else value >= low)
    high_ok = high is None or (value < high if meta["high_open"] else value <= high)
    if low_ok and high_ok:
        return None
    if high is None:
        rule = "must be positive" if meta["low_open"] else "must not be negative"
    else:
        rule = (f"must lie in {'(' if meta['low_open'] else '['}{low:g}, {high:g}"
                f"{')' if meta['high_open'] else ']'}")
    return rule, f"set it within that range (default {field.default!r})"
