"""The one test of every number a user, a config or a file gives: ints (never bools) and finite
numbers in a range, and the ConfigError that names the field and the valid range."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

from ..errors import ConfigError

__all__ = ["is_int", "is_number", "check_int", "check_positive_int"]


def is_int(value: Any, low: int | None = None, high: int | None = None) -> TypeGuard[int]:
    """Whether ``value`` is an int (not a bool) in ``[low, high]``: the one test of every
    integer a user, a config or a file gives."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def is_number(value: Any, low: float | None = None, high: float | None = None) -> TypeGuard[float]:
    """Whether ``value`` is a finite int or float (not a bool) in ``[low, high]``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (low is None or value >= low)
        and (high is None or value <= high)
    )


def check_int(field: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``, else raise
    :class:`ConfigError` naming ``field`` and the valid range."""
    if not is_int(value, low, high):
        if low is not None and high is not None:
            valid = f"an integer from {low} to {high}"
        elif low is not None:
            valid = "a positive integer" if low == 1 else f"an integer >= {low}"
        else:
            valid = "an integer" if high is None else f"an integer <= {high}"
        raise ConfigError(f"{field} must be {valid}, got {value!r}")
    return value


def check_positive_int(field: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise :class:`ConfigError` naming ``field``."""
    return check_int(field, value, low=1)
