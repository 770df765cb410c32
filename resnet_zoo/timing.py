"""Images per second of a callable on one batch: the timing loop of bench and of
backend="auto"'s calibration."""

from __future__ import annotations

import time
from typing import Callable

import torch

from .config import check_positive_int

__all__ = ["time_images_per_second"]


def time_images_per_second(fn: Callable[[torch.Tensor], object], x: torch.Tensor, *, iters: int = 3,
                           warmup: int = 2, repeats: int = 3) -> float:
    """``warmup`` batches, then the best of ``repeats`` rounds of ``iters`` batches."""
    check_positive_int("iters", iters)
    check_positive_int("repeats", repeats)
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iters):
                fn(x)
            best = max(best, iters * x.shape[0] / (time.perf_counter() - start))
    return best
