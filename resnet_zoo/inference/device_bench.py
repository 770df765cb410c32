"""``bench`` on a GPU: the rows a user with a GPU compares, timed as timm's ``benchmark.py``
times them.

Each path is warmed up (and compiled, where it is compiled) first; then ``repeats`` rounds of
``iters`` batches are timed with CUDA events (:class:`resnet_zoo.device.Stopwatch`) and the
median round is reported with the spread of the rounds, the peak memory of the path
(``max_memory_allocated``) and its share of this GPU's measured bfloat16 matmul peak. The same
code runs on the CPU (``perf_counter``, no peak memory), which is how it is tested where no GPU
is at hand.

Rows: torchvision eager float32 (TF32 off and on), torchvision eager AMP (NCHW and
channels-last), ``torch.compile`` of torchvision (AMP, channels-last), resnet_zoo eager, the fast
path in float32 and in the device's 16-bit dtype (compiled and not), and onnxruntime's CUDA
provider where it is installed.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any, Callable, Iterator, Sequence

import torch

from ..device import Stopwatch, fast_dtype, peak_memory, reset_peak_memory, synchronize, tf32
from ..factory import create
from ..model import ResNetBase
from ..registry import get_entry
from ..summary import count_macs
from ..util.checks import check_positive_int
from .auto import optimize_for_inference
from .runtimes import build_runtime, ort_cuda_available
from .timing import BenchResult, device_seconds_per_batch

__all__ = ["iter_device_bench", "matmul_peak_tflops", "RESNET50_GFLOP"]

log = logging.getLogger(__name__)

RESNET50_GFLOP = 8.2  # per image at 224 px, multiply-adds counted twice


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, *, n: int = 4096, iters: int = 20) -> float:
    """The best square-matmul throughput of ``device`` in ``dtype`` (TFLOP/s), measured."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    with torch.inference_mode():
        for _ in range(2):
            a @ b
        synchronize(device)
        for _ in range(3):
            with Stopwatch(device) as sw:
                for _ in range(iters):
                    a @ b
            best = max(best, 2 * n**3 * iters / sw.seconds)
    return best / 1e12


def _amp(device: torch.device, dtype: torch.dtype) -> Any:
    return torch.autocast(device.type, dtype=dtype)


def _with_tf32(fn: Callable, on: bool) -> Callable:
    def run(x: torch.Tensor) -> Any:
        tf32(on)
        return fn(x)

    return run


def _torchvision_paths(name: str, device: torch.device, half: torch.dtype, compile: bool) -> list[tuple]:
    try:
        import torchvision.models as tvm
    except ImportError:
        return [("torchvision", None, None, "not installed")]
    builder = getattr(tvm, name, None)
    if builder is None:
        return []
    tv = builder().eval().to(device)
    tv_cl = builder().eval().to(device, memory_format=torch.channels_last)

    def amp(model: Callable, cl: bool) -> Callable:
        def run(x: torch.Tensor) -> Any:
            with _amp(device, half):
                return model(x.contiguous(memory_format=torch.channels_last) if cl else x)

        return run

    tag = _tag(half)
    paths = [("torchvision eager fp32", _with_tf32(tv, False), torch.float32, "")]
    if device.type == "cuda":
        paths.append(
            ("torchvision eager fp32 tf32", _with_tf32(tv, True), torch.float32, "TF32 matmuls and convolutions")
        )
    if half == torch.float32:  # a CPU without fast bfloat16: no AMP rows (emulated, it only loses)
        return paths
    paths += [
        (f"torchvision eager amp {tag}", amp(tv, False), half, "autocast, NCHW"),
        (f"torchvision eager amp {tag} cl", amp(tv_cl, True), half, "autocast, channels-last"),
    ]
    if compile:
        compiled = torch.compile(tv_cl, dynamic=False)
        paths.append((f"torchvision compile amp {tag} cl", amp(compiled, True), half, "torch.compile, autocast"))
    return paths


def _own_paths(
    model: ResNetBase, device: torch.device, half: torch.dtype, compile: bool, max_batch: int
) -> list[tuple]:
    """resnet_zoo eager, and the fast path in float32 and ``half``: the whole model cast, and
    autocast over the folded float32 model (the two forms the issue asks to measure), each
    compiled too (buckets up to ``max_batch``)."""
    eager = model.to(device)
    paths: list[tuple] = [("resnet_zoo eager fp32", _with_tf32(eager, False), torch.float32, "")]
    for dtype in dict.fromkeys((torch.float32, half)):
        fast = optimize_for_inference(eager, dtype=dtype, device=device)
        paths.append((f"resnet_zoo fast {_tag(dtype)}", fast, dtype, "folded, channels-last, cast"))
        if compile:
            built = optimize_for_inference(eager, dtype=dtype, device=device, compile=True, batch_size=max_batch)
            paths.append((f"resnet_zoo fast {_tag(dtype)} compiled", built, dtype, "torch.compile, bucketed batches"))
    if half != torch.float32:
        folded = optimize_for_inference(eager, dtype=torch.float32, device=device)

        def autocast(x: torch.Tensor) -> Any:
            with _amp(device, half):
                return folded(x)

        paths.append((f"resnet_zoo fast amp {_tag(half)}", autocast, half, "folded float32 model under autocast"))
    return paths


def _onnxruntime_path(model: ResNetBase, device: torch.device) -> list[tuple]:
    """onnxruntime's CUDA provider as resnet_zoo builds it (build_runtime, parity-checked), or a
    row saying why not."""
    if device.type != "cuda":
        return []
    label = "onnxruntime cuda fp32"
    if not ort_cuda_available():
        return [(label, None, None, "not installed (onnxruntime with its CUDAExecutionProvider)")]
    runtime = build_runtime(model, "onnxruntime", torch.float32, device=device)
    return [(label, runtime, torch.float32, "CUDAExecutionProvider, host arrays")]


def _tag(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def iter_device_bench(
    names: Sequence[str], device: torch.device, *, batch_sizes: Sequence[int] = (1, 64, 256), iters: int = 50,
    repeats: int = 5, compile: bool = True, with_torchvision: bool = True, peak_tflops: float | None = None,
    progress: bool = False,
) -> Iterator[list[BenchResult]]:  # fmt: skip
    """One list of rows per model and batch size, as each is measured (see the module's text).
    ``peak_tflops``: this device's 16-bit matmul peak (measured here when None). Every argument
    is checked at the call, before anything is timed."""
    for value, what in ((iters, "iters"), (repeats, "repeats"), *((b, "batch_size") for b in batch_sizes)):
        check_positive_int(what, value)
    entries = [get_entry(n) for n in names]
    return _rows(names, entries, device, batch_sizes, iters, repeats, compile, with_torchvision, peak_tflops, progress)


def _rows(
    names: Sequence[str], entries: list, device: torch.device, batch_sizes: Sequence[int], iters: int, repeats: int,
    compile: bool, with_torchvision: bool, peak_tflops: float | None, progress: bool,
) -> Iterator[list[BenchResult]]:  # fmt: skip
    from tqdm.auto import tqdm

    half = fast_dtype(device)  # a GPU's 16-bit dtype; on a CPU bfloat16 where it is fast, else float32
    peak = (
        peak_tflops
        if peak_tflops is not None
        else matmul_peak_tflops(device, half, n=4096 if device.type == "cuda" else 512)
    )
    for name, entry in zip(names, entries):
        model = create(name).eval()
        size = entry.input_size
        macs = count_macs(model, (1, entry.config.img_channels, size, size))
        paths = _torchvision_paths(name, device, half, compile) if with_torchvision else []
        paths += _onnxruntime_path(model, device)  # exported from the CPU copy, before it moves
        paths += _own_paths(model, device, half, compile, max(batch_sizes))
        for batch in batch_sizes:
            x = torch.randn(batch, entry.config.img_channels, size, size, device=device)
            rows: list[BenchResult] = []
            for label, fn, _dtype, note in tqdm(paths, desc=f"bench {name} b{batch}", disable=not progress):
                if fn is None:
                    rows.append(BenchResult(name, label, batch, size, 0.0, None, 0.0, None, note, device=str(device)))
                    continue
                reset_peak_memory(device)
                try:
                    rounds = device_seconds_per_batch(fn, x, device, iters=iters, repeats=repeats)
                except Exception as e:  # a path this device or torch cannot run: a row says so
                    log.warning("%s %s at batch %d: %s", name, label, batch, e)
                    failed = f"failed: {str(e)[:120]}"
                    rows.append(BenchResult(name, label, batch, size, 0.0, None, 0.0, None, failed, device=str(device)))
                    continue
                median = statistics.median(rounds)
                ips = batch / median
                gflops = 2 * macs * ips / 1e9
                mem = peak_memory(device)
                rows.append(
                    BenchResult(
                        model=name, path=label, batch_size=batch, input_size=size, images_per_s=ips,
                        ratio_vs_torchvision=None, gflops_per_s=gflops, fraction_of_gemm_peak=gflops / (peak * 1e3),
                        note=note, device=str(device), ms_per_batch=1e3 * median,
                        spread_pct=100 * (max(rounds) - min(rounds)) / median,
                        peak_memory_mb=None if mem is None else mem / 2**20,
                    )
                )  # fmt: skip
            tf32(False)  # torch's default again
            yield _ratios(rows, half)


def _ratios(rows: list[BenchResult], half: torch.dtype) -> list[BenchResult]:
    """Each row's ratio to torchvision eager AMP (NCHW) of the same batch, the baseline the
    goals name (torchvision eager fp32 where there is no AMP row)."""
    import dataclasses

    named = {r.path: r.images_per_s for r in rows}
    base = named.get(f"torchvision eager amp {_tag(half)}") or named.get("torchvision eager fp32")
    if not base:
        return rows
    return [
        dataclasses.replace(r, ratio_vs_torchvision=r.images_per_s / base if r.images_per_s else None) for r in rows
    ]
