"""Throughput of resnet_zoo (eager and fast path) beside torchvision, in one process.

Speed does not depend on the weights' values, so models are randomly initialised: no download.
Each path is timed over ``iters`` batches after a warm-up batch, in ``repeats`` rounds that
alternate between the paths; the best round of each is kept (the least disturbed by the rest
of the machine).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from .config import check_positive_int

__all__ = ["BenchResult", "bench_models", "gemm_peak_gflops", "time_images_per_second"]

log = logging.getLogger(__name__)


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

    def to_dict(self) -> dict:
        return asdict(self)


def time_images_per_second(fn: Callable[[torch.Tensor], object], x: torch.Tensor, *, iters: int = 3,
                           warmup: int = 2, repeats: int = 3) -> float:
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


def gemm_peak_gflops(dtype: torch.dtype, n: int = 2048, iters: int = 10) -> float:
    """Best matmul throughput of this machine (GFLOP/s) for square ``n x n`` products."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    with torch.inference_mode():
        for _ in range(2):
            a @ b
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(iters):
                a @ b
            best = max(best, iters * 2 * n**3 / (time.perf_counter() - start))
    return best / 1e9


def bench_models(
    names: Sequence[str],
    *,
    batch_size: int = 16,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.bfloat16),
    input_size: int | None = None,
    iters: int = 3,
    repeats: int = 3,
    with_torchvision: bool = True,
    gemm_peaks: dict[torch.dtype, float] | None = None,
) -> list[BenchResult]:
    """Images/s of each model: torchvision eager (when it has the name), resnet_zoo eager and
    resnet_zoo ``optimize_for_inference`` for each dtype."""
    from .factory import create
    from .inference import optimize_for_inference
    from .registry import get_entry
    from .summary import count_macs

    check_positive_int("batch_size", batch_size)
    results: list[BenchResult] = []
    peaks = gemm_peaks if gemm_peaks is not None else {d: gemm_peak_gflops(d) for d in dtypes}
    for name in names:
        entry = get_entry(name)
        size = input_size or entry.input_size
        x = torch.randn(batch_size, entry.config.img_channels, size, size)
        model = create(name).eval()
        macs = count_macs(model, (1, entry.config.img_channels, size, size))
        paths: list[tuple[str, Callable, torch.dtype]] = []
        if with_torchvision:
            try:
                import torchvision.models as tvm

                builder = getattr(tvm, entry.name, None)
            except ImportError:
                builder = None
            if builder is not None:
                paths.append(("torchvision eager fp32", builder().eval(), torch.float32))
        paths.append(("resnet_zoo eager fp32", model, torch.float32))
        for dtype in dtypes:
            tag = "fp32" if dtype == torch.float32 else "bf16"
            paths.append((f"resnet_zoo fast {tag}", optimize_for_inference(model, dtype=dtype), dtype))
        # Rounds alternate between the paths, so a slow spell of the machine hits them all.
        best = {label: 0.0 for label, _, _ in paths}
        for _ in range(repeats):
            for label, fn, _ in paths:
                best[label] = max(best[label], time_images_per_second(
                    fn, x, iters=iters, warmup=1, repeats=1))
        baseline = next((v for k, v in best.items() if k.startswith("torchvision")), None)
        for label, fn, dtype in paths:
            ips = best[label]
            gflops = 2 * macs * ips / 1e9
            peak = peaks.get(dtype)
            results.append(BenchResult(
                model=name, path=label, batch_size=batch_size, input_size=size, images_per_s=ips,
                ratio_vs_torchvision=(ips / baseline) if baseline else None, gflops_per_s=gflops,
                fraction_of_gemm_peak=(gflops / peak) if peak else None,
            ))
            log.info("%s %s: %.2f images/s", name, label, ips)
    return results


def machine_description() -> str:
    """CPU model, cores and torch version, for the record next to the figures."""
    import os
    import platform

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        feats = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in text]
        flags = " ".join(feats)
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores ({flags}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
