"""tqdm bars that draw their final state once."""

from __future__ import annotations

from typing import Any

__all__ = ["advance"]


def advance(bar: Any, n: int) -> None:
    """``bar.update(n)``, except that the step reaching the total is not drawn: ``close()``
    draws the final state (with the final rate), so the 100% line appears once, not twice."""
    if bar.total is not None and bar.n + n >= bar.total:
        bar.n += n
    else:
        bar.update(n)
