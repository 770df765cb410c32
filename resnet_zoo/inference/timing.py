"""Images per second of a callable on one batch: the timing loop of bench and of
backend="auto"'s calibration; and a bench row, as the CPU and the device benches give it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ..util.checks import check_positive_int

__all__ = ["time_images_per_second", "device_seconds_per_batch", "SETTLE_S", "BenchResult"]

# After a run, OpenMP's and onnxruntime's worker threads spin for a while before they sleep, and
# take cores from whatever runs next in the same process. When paths are timed in alternating
# rounds, each waits this long first. Measured on a Zen 5 (ResNet-50 batch 1, three paths in
# rotation): torch bf16 timed right after an onnxruntime session 46-48 images/s, after a 0.3 s
# pause 60; OpenVINO int8 171 against 181-190.
SETTLE_S = 0.3


def device_seconds_per_batch(
    fn: Callable[[torch.Tensor], object], x: torch.Tensor, device: torch.device, *, iters: int, repeats: int,
    warmup: int = 3,
) -> list[float]:  # fmt: skip
    """Seconds per batch of each of ``repeats`` rounds of ``iters`` batches on ``device``, after
    ``warmup`` batches (allocation, cuDNN's algorithm search, a compile): CUDA events on a GPU,
    so that what is timed is the device's work, not the launches."""
    from ..device import Stopwatch, synchronize

    rounds = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        synchronize(device)
        for _ in range(repeats):
            with Stopwatch(device) as sw:
                for _ in range(iters):
                    fn(x)
            rounds.append(sw.seconds / iters)
    return rounds


def time_images_per_second(
    fn: Callable[[torch.Tensor], object],
    x: torch.Tensor,
    *,
    iters: int = 3,
    warmup: int = 2,
    repeats: int = 3,
    settle: float = 0.0,
) -> float:
    """``settle`` seconds of pause (see :data:`SETTLE_S`), ``warmup`` batches, then the best of
    ``repeats`` rounds of ``iters`` batches."""
    check_positive_int("iters", iters)
    check_positive_int("repeats", repeats)
    if settle > 0:
        time.sleep(settle)
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


@dataclass(frozen=True)
class BenchResult:
    model: str
    path: str  # "torchvision eager fp32", "resnet_zoo eager fp32", "resnet_zoo fast bf16", ...
    batch_size: int
    input_size: int
    images_per_s: float
    ratio_vs_torchvision: float | None  # against torchvision's eager fp32 in the same run
    gflops_per_s: float  # 2 * MACs * images/s
    fraction_of_gemm_peak: float | None  # against the matmul peak of the same dtype
    note: str = ""  # "not installed", compile time, what backend="auto" chose
    # Filled by the device bench (inference.device_bench): where, the median batch time, the
    # spread of the rounds around it, the peak memory (GPU).
    device: str = "cpu"
    ms_per_batch: float | None = None
    spread_pct: float | None = None
    peak_memory_mb: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)
