"""Throughput of resnet_zoo (eager and fast path) beside torchvision, in one process.

Speed does not depend on the weights' values, so models are randomly initialised: no download.
Each path is warmed up with one batch, then timed over ``iters`` batches in ``repeats`` rounds
that alternate between the paths; the best round of each is kept (the least disturbed by the
rest of the machine). Only dtypes this CPU runs fast are timed (:mod:`resnet_zoo.cpu`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, cast

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import cpu
from ..device import resolve_device
from ..errors import ConfigError
from ..factory import create
from ..model import ResNetBase
from ..registry import get_entry
from ..summary import count_macs
from ..util.checks import check_positive_int
from . import runtimes as rt
from .auto import optimize_for_inference
from .timing import SETTLE_S, BenchResult, time_images_per_second

__all__ = [
    "BenchResult",
    "ExtraPaths",
    "PeerHook",
    "bench_models",
    "gemm_peak_gflops",
    "iter_bench",
    "machine_description",
    "time_images_per_second",
]

log = logging.getLogger(__name__)


def gemm_peak_gflops(dtype: torch.dtype, *, budget_s: float = 2.0, max_n: int = 2048) -> float:
    """Best matrix-product throughput of this machine's torch (GFLOP/s) for square products,
    within about ``budget_s`` seconds.

    Each size is timed two ways, ``a @ b`` and the same product as a 1x1 convolution
    (channels-last, oneDNN), and the faster counts: on AMD CPUs torch's float32 matmul runs
    MKL's AVX2 kernels at half of what oneDNN's AVX-512 convolutions reach (measured on a Zen 5:
    226 against 468 GFLOP/s), and a peak below what a ResNet's convolutions reach is no peak.
    The size grows from 256 while the next (8x longer) products still fit the budget, then the
    rest of the budget repeats the largest size: about ``budget_s`` seconds on any CPU, even
    where the dtype is emulated and one 1024x1024 product takes seconds.
    """
    deadline = time.perf_counter() + budget_s
    best, n = 0.0, 256
    with torch.inference_mode():
        while True:
            a = torch.randn(n, n).to(dtype)
            b = torch.randn(n, n).to(dtype)
            # About the same product as a 1x1 convolution: n channels in and out over a square
            # of side**2 ~ n pixels (a square runs faster in oneDNN than a long strip).
            side = math.isqrt(n)
            x = torch.randn(1, n, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
            w = b.reshape(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
            products = (
                (lambda a=a, b=b: a @ b, 2 * n**3),
                (lambda x=x, w=w: torch.nn.functional.conv2d(x, w), 2 * n * n * side * side),
            )
            took = 0.0
            for product, flops in products:
                product()  # warm-up: first-call packing and thread start
                start = time.perf_counter()
                product()
                took_one = time.perf_counter() - start
                took += took_one
                best = max(best, flops / took_one)
            # The next size costs ~8x: a warm-up and one timed product of each kind.
            if n >= max_n or time.perf_counter() + 16 * took > deadline:
                break
            n *= 2
        while time.perf_counter() + took < deadline:
            for product, flops in products:
                start = time.perf_counter()
                product()
                best = max(best, flops / (time.perf_counter() - start))
    return best / 1e9


@dataclass
class ExtraPaths:
    """Paths a peer hook adds to a model's rounds: ``(label, callable, dtype)`` each, a note per
    label, and the labels of peers that are not installed (a row each, saying so)."""

    paths: list[tuple[str, Callable, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


# A peer hook: (the reference model, the input batch, the dtypes timed) -> ExtraPaths.
# resnet_zoo.inference.peers.peer_paths() is the one `bench --peers` uses (onnxruntime, OpenVINO
# and torch.compile, each as its documentation runs it); it must leave nothing behind.
PeerHook = Callable[[nn.Module, torch.Tensor, Sequence[torch.dtype]], ExtraPaths]


def iter_bench(
    names: Sequence[str],
    *,
    batch_size: int = 16,
    dtypes: Sequence[torch.dtype | str] | None = None,
    input_size: int | None = None,
    iters: int = 2,
    repeats: int = 3,
    with_torchvision: bool = True,
    gemm_peaks: dict[torch.dtype, float] | None = None,
    progress: bool = False,
    peers: PeerHook | None = None,
    runtimes: bool | None = None,
    int8: bool = False,
    device: Any = "cpu",
) -> Iterator[list[BenchResult]]:
    """Images/s of each model, one list of rows per model as soon as it is measured:
    torchvision eager (when it has the name), resnet_zoo eager and resnet_zoo
    ``optimize_for_inference`` for each dtype.

    ``dtypes=None`` times every dtype this CPU runs fast (:func:`resnet_zoo.cpu.supported_dtypes`);
    naming one it does not raises :class:`ConfigError` before anything is timed.
    ``progress`` shows a tqdm bar (stderr) over each model's warm-up and rounds.

    ``runtimes=True`` (the default when ``peers`` is given) adds resnet_zoo's own runtime
    backends and ``backend="auto"``; ``int8=True`` its int8 paths (calibrated on random
    images: speed does not depend on the values). ``peers``: a hook (:data:`PeerHook`) adding
    what a user would pick instead, as :func:`resnet_zoo.inference.peers.peer_paths` builds it.

    ``device``: ``"cpu"`` (these rows), or a GPU (``"auto"`` where there is one, ``"cuda[:N]"``):
    :func:`resnet_zoo.inference.device_bench.iter_device_bench`'s rows at ``batch_size``, timed
    with CUDA events over ``max(iters, 50)`` batches in ``max(repeats, 5)`` rounds.

    Every argument is checked when this is called, before anything is timed or printed.
    """
    where = resolve_device(device)
    if where.type == "cuda":
        from .device_bench import iter_device_bench

        return iter_device_bench(
            names, where, batch_sizes=(batch_size,), iters=max(iters, 50), repeats=max(repeats, 5),
            with_torchvision=with_torchvision, progress=progress,
        )  # fmt: skip
    check_positive_int("batch_size", batch_size)
    check_positive_int("iters", iters)
    check_positive_int("repeats", repeats)
    if input_size is not None:
        check_positive_int("input_size", input_size)
    if peers is not None and not callable(peers):
        raise ConfigError(f"peers must be a hook (see resnet_zoo.inference.peers.peer_paths), got {peers!r}")
    chosen = cpu.supported_dtypes() if dtypes is None else tuple(dict.fromkeys(cpu.resolve_dtype(d) for d in dtypes))
    entries = [get_entry(name) for name in names]  # unknown names fail before any timing
    own_runtimes = peers is not None if runtimes is None else runtimes
    return _iter_rows(
        names,
        entries,
        batch_size=batch_size,
        chosen=chosen,
        input_size=input_size,
        iters=iters,
        repeats=repeats,
        with_torchvision=with_torchvision,
        gemm_peaks=gemm_peaks,
        progress=progress,
        peers=peers,
        own_runtimes=own_runtimes,
        int8=int8,
    )


def _iter_rows(
    names: Sequence[str],
    entries: Sequence[Any],
    *,
    batch_size: int,
    chosen: Sequence[torch.dtype],
    input_size: int | None,
    iters: int,
    repeats: int,
    with_torchvision: bool,
    gemm_peaks: dict | None,
    progress: bool,
    peers: PeerHook | None,
    own_runtimes: bool,
    int8: bool,
) -> Iterator[list[BenchResult]]:
    peaks = dict(gemm_peaks) if gemm_peaks is not None else {}
    for dtype in chosen:
        if dtype not in peaks:
            peaks[dtype] = gemm_peak_gflops(dtype)
    for name, entry in zip(names, entries):
        size = input_size or entry.input_size
        x = torch.randn(batch_size, entry.config.img_channels, size, size)
        model = create(name).eval()
        extra = ExtraPaths()
        paths = _own_paths(entry, model, chosen, with_torchvision)
        reference = paths[0][1]  # torchvision's model where it has one: what the peers run
        if peers is not None:
            extra = peers(cast(nn.Module, reference), x, chosen)
        if own_runtimes or int8:
            _add_runtime_paths(extra, model, x, chosen, runtimes=own_runtimes, int8=int8)
        paths += extra.paths
        best = _time_rounds(name, paths, x, iters=iters, repeats=repeats, progress=progress)
        macs = count_macs(model, (1, entry.config.img_channels, size, size))
        yield _rows(name, paths, best, extra, batch_size, size, macs, peaks)


def _own_paths(
    entry: Any, model: ResNetBase, chosen: Sequence[torch.dtype], with_torchvision: bool
) -> list[tuple[str, Callable, Any]]:
    """torchvision eager (if it has the architecture and is installed), resnet_zoo eager, and
    resnet_zoo's fast path in each dtype."""
    paths: list[tuple[str, Callable, Any]] = []
    if with_torchvision:
        try:
            import torchvision.models as tvm

            builder = getattr(tvm, entry.name, None)
        except ImportError:
            builder = None
        if builder is not None:
            paths.append(("torchvision eager fp32", builder().eval(), torch.float32))
    paths.append(("resnet_zoo eager fp32", model, torch.float32))
    for dtype in chosen:
        paths.append((f"resnet_zoo fast {_tag(dtype)}", optimize_for_inference(model, dtype=dtype), dtype))
    return paths


def _time_rounds(
    name: str, paths: list, x: torch.Tensor, *, iters: int, repeats: int, progress: bool
) -> dict[str, float]:
    """The best images/s of each path over ``repeats`` rounds that alternate between them, so
    that a slow spell of the machine hits them all."""
    best = {label: 0.0 for label, _, _ in paths}
    with tqdm(
        total=len(paths) * (1 + repeats), desc=f"bench {name}", unit="run", disable=not progress, leave=False
    ) as bar:
        with torch.inference_mode():
            for _, fn, _ in paths:  # warm-up once: first-call allocation and weight packing
                fn(x)
                bar.update()
        for _ in range(repeats):
            for label, fn, _ in paths:
                best[label] = max(
                    best[label], time_images_per_second(fn, x, iters=iters, warmup=0, repeats=1, settle=SETTLE_S)
                )
                bar.update()
    return best


def _rows(
    name: str,
    paths: list,
    best: dict[str, float],
    extra: ExtraPaths,
    batch_size: int,
    size: int,
    macs: int,
    peaks: dict,
) -> list[BenchResult]:
    baseline = next((v for k, v in best.items() if k.startswith("torchvision")), None)
    rows = []
    for label, _, dtype in paths:
        ips = best[label]
        gflops = 2 * macs * ips / 1e9
        peak = peaks.get(dtype)
        rows.append(
            BenchResult(
                model=name,
                path=label,
                batch_size=batch_size,
                input_size=size,
                images_per_s=ips,
                ratio_vs_torchvision=(ips / baseline) if baseline else None,
                gflops_per_s=gflops,
                fraction_of_gemm_peak=(gflops / peak) if peak and isinstance(dtype, torch.dtype) else None,
                note=extra.notes.get(label, ""),
            )
        )
        log.info("%s %s: %.2f images/s", name, label, ips)
    for label in extra.missing:
        rows.append(
            BenchResult(
                model=name,
                path=label,
                batch_size=batch_size,
                input_size=size,
                images_per_s=0.0,
                ratio_vs_torchvision=None,
                gflops_per_s=0.0,
                fraction_of_gemm_peak=None,
                note="not installed",
            )
        )
    return rows


def _tag(dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


def _add_runtime_paths(
    extra: ExtraPaths, model: ResNetBase, x: torch.Tensor, chosen: Sequence[torch.dtype], *, runtimes: bool, int8: bool
) -> None:
    """resnet_zoo's own runtime backends, ``backend="auto"`` and (``int8``) its int8 paths."""

    have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
    for dtype in chosen if runtimes else ():
        for backend in ("onnxruntime", "openvino"):
            if not have[backend] or (backend == "onnxruntime" and dtype == torch.bfloat16):
                continue
            try:
                fast = rt.build_runtime(model, backend, dtype)
            except Exception as e:  # a runtime that cannot run this model here: say so
                log.warning("resnet_zoo %s %s: %s", backend, _tag(dtype), e)
                continue
            extra.paths.append((f"resnet_zoo {backend} {_tag(dtype)}", fast, dtype))
        auto = optimize_for_inference(model, dtype=dtype, backend="auto", batch_size=x.shape[0])
        label = f"resnet_zoo auto {_tag(dtype)}"
        extra.notes[label] = f"backend {auto.backend}"
        extra.paths.append((label, auto, dtype))
    if int8 and have["onnxruntime"]:
        calibration = torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(0))
        for backend in ("onnxruntime", "openvino"):
            if have[backend]:
                fast = rt.build_runtime(model, backend, "int8", calibration=calibration, check=False)
                extra.paths.append((f"resnet_zoo {backend} int8", fast, "int8"))


def bench_models(names: Sequence[str], **kwargs) -> list[BenchResult]:
    """Every row of :func:`iter_bench` in one list (same arguments)."""
    return [row for rows in iter_bench(names, **kwargs) for row in rows]


def machine_description() -> str:
    """CPU model, cores, torch's ISA and fast dtypes, torch version: the record beside a figure."""
    return cpu.cpu_capabilities().describe()
