"""Throughput of resnet_zoo (eager and fast path) beside torchvision, in one process.

Speed does not depend on the weights' values, so models are randomly initialised: no download.
Each path is warmed up with one batch, then timed over ``iters`` batches in ``repeats`` rounds
that alternate between the paths; the best round of each is kept (the least disturbed by the
rest of the machine). Only dtypes this CPU runs fast are timed (:mod:`resnet_zoo.cpu`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from . import cpu
from .config import check_positive_int
from .timing import SETTLE_S, time_images_per_second

__all__ = ["BenchResult", "bench_models", "gemm_peak_gflops", "iter_bench", "machine_description",
           "time_images_per_second"]

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
    note: str = ""  # "not installed", compile time, what backend="auto" chose

    def to_dict(self) -> dict:
        return asdict(self)


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
            products = ((lambda: a @ b, 2 * n**3),
                        (lambda: torch.nn.functional.conv2d(x, w), 2 * n * n * side * side))
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
    peers: bool | Sequence[str] = False,
    int8: bool = False,
) -> Iterator[list[BenchResult]]:
    """Images/s of each model, one list of rows per model as soon as it is measured:
    torchvision eager (when it has the name), resnet_zoo eager and resnet_zoo
    ``optimize_for_inference`` for each dtype.

    ``dtypes=None`` times every dtype this CPU runs fast (:func:`resnet_zoo.cpu.supported_dtypes`);
    naming one it does not raises :class:`ConfigError` before anything is timed.
    ``progress`` shows a tqdm bar (stderr) over each model's warm-up and rounds.

    ``peers=True`` adds what a user would pick instead, each used as its documentation shows:
    onnxruntime and OpenVINO running the torchvision model exported to ONNX (default session /
    compile settings), and ``torch.compile`` of it (its compile time in the row's note); and
    resnet_zoo's own runtime backends and ``backend="auto"``. A peer that is not installed gets
    a row saying so. ``int8=True`` adds resnet_zoo's int8 paths (calibrated on random images:
    speed does not depend on the values). ``peers`` may name some of them:
    ``("onnxruntime", "openvino", "torch.compile")``.

    Every argument is checked when this is called, before anything is timed or printed.
    """
    from .registry import get_entry

    check_positive_int("batch_size", batch_size)
    check_positive_int("iters", iters)
    check_positive_int("repeats", repeats)
    if input_size is not None:
        check_positive_int("input_size", input_size)
    wanted = _wanted_peers(peers)
    chosen = cpu.supported_dtypes() if dtypes is None else tuple(dict.fromkeys(
        cpu.resolve_dtype(d) for d in dtypes))
    entries = [get_entry(name) for name in names]  # unknown names fail before any timing
    return _bench_rows(names, entries, batch_size=batch_size, chosen=chosen, input_size=input_size,
                       iters=iters, repeats=repeats, with_torchvision=with_torchvision,
                       gemm_peaks=gemm_peaks, progress=progress, peers=wanted, int8=int8)


def _bench_rows(names: Sequence[str], entries: Sequence[Any], *, batch_size: int,
                chosen: Sequence[torch.dtype], input_size: int | None, iters: int, repeats: int,
                with_torchvision: bool, gemm_peaks: dict[torch.dtype, float] | None, progress: bool,
                peers: set[str], int8: bool) -> Iterator[list[BenchResult]]:
    from tqdm.auto import tqdm

    from .factory import create
    from .inference import optimize_for_inference
    from .summary import count_macs

    peaks = dict(gemm_peaks) if gemm_peaks is not None else {}
    for dtype in chosen:
        if dtype not in peaks:
            peaks[dtype] = gemm_peak_gflops(dtype)
    for name, entry in zip(names, entries):
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
        for dtype in chosen:
            tag = "fp32" if dtype == torch.float32 else "bf16"
            paths.append((f"resnet_zoo fast {tag}", optimize_for_inference(model, dtype=dtype), dtype))
        notes: dict[str, str] = {}
        missing: list[str] = []
        if peers or int8:
            _add_runtime_paths(paths, notes, missing, model, paths[0][1] if with_torchvision and
                               paths[0][0].startswith("torchvision") else model, x, chosen,
                               wanted=peers, int8=int8)
        best = {label: 0.0 for label, _, _ in paths}
        with tqdm(total=len(paths) * (1 + repeats), desc=f"bench {name}", unit="run",
                  disable=not progress, leave=False) as bar:
            with torch.inference_mode():
                for _, fn, _ in paths:  # warm-up once: first-call allocation and weight packing
                    fn(x)
                    bar.update()
            # Rounds alternate between the paths, so a slow spell of the machine hits them all.
            for _ in range(repeats):
                for label, fn, _ in paths:
                    best[label] = max(best[label], time_images_per_second(
                        fn, x, iters=iters, warmup=0, repeats=1, settle=SETTLE_S))
                    bar.update()
        baseline = next((v for k, v in best.items() if k.startswith("torchvision")), None)
        rows = []
        for label, fn, dtype in paths:
            ips = best[label]
            gflops = 2 * macs * ips / 1e9
            peak = peaks.get(dtype)
            rows.append(BenchResult(
                model=name, path=label, batch_size=batch_size, input_size=size, images_per_s=ips,
                ratio_vs_torchvision=(ips / baseline) if baseline else None, gflops_per_s=gflops,
                fraction_of_gemm_peak=(gflops / peak) if peak and isinstance(dtype, torch.dtype) else None,
                note=notes.get(label, ""),
            ))
            log.info("%s %s: %.2f images/s", name, label, ips)
        for label in missing:
            rows.append(BenchResult(model=name, path=label, batch_size=batch_size, input_size=size,
                                    images_per_s=0.0, ratio_vs_torchvision=None, gflops_per_s=0.0,
                                    fraction_of_gemm_peak=None, note="not installed"))
        yield rows


def _tag(dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


PEERS = ("onnxruntime", "openvino", "torch.compile")


def _wanted_peers(peers: bool | Sequence[str]) -> set[str]:
    from .errors import ConfigError

    if isinstance(peers, str):
        peers = (peers,)
    wanted = set(PEERS if peers is True else (peers or ()))
    if wanted - set(PEERS):
        raise ConfigError(f"peers must be True or some of {list(PEERS)}, got {sorted(wanted)}")
    return wanted


def _add_runtime_paths(paths: list, notes: dict[str, str], missing: list[str], model, reference,
                       x: torch.Tensor, chosen: Sequence[torch.dtype], *, wanted: set[str],
                       int8: bool) -> None:
    """Append the peers' and resnet_zoo's runtime paths to ``paths`` (label, callable, dtype)."""
    import importlib.util
    import tempfile
    from pathlib import Path

    from . import runtimes
    from .inference import optimize_for_inference

    have = {name: importlib.util.find_spec(name) is not None for name in ("onnxruntime", "openvino")}
    workdir = Path(tempfile.mkdtemp(prefix="resnet_zoo-bench-"))
    onnx_path = None
    if wanted & {"onnxruntime", "openvino"} and (have["onnxruntime"] or have["openvino"]):
        from .export import export_model

        onnx_path = export_model(reference.eval(), workdir / "peer.onnx", format="onnx",
                                 input_size=x.shape[-1], img_channels=x.shape[1])
    for name in sorted(wanted & {"onnxruntime", "openvino"}):
        if not have[name]:
            missing.append(f"{name} (peer)")
    if wanted:
        if "onnxruntime" in wanted and have["onnxruntime"]:
            import onnxruntime as ort

            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            paths.append(("onnxruntime fp32 (peer)",
                          lambda t, s=session: s.run(None, {"images": t.numpy()})[0], torch.float32))
        if "openvino" in wanted and have["openvino"]:
            import openvino as ov

            compiled = ov.Core().compile_model(str(onnx_path), "CPU")
            # OpenVINO picks its precision itself (bf16 where the CPU has it): label what ran.
            precision = str(compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
            bf16 = "bf16" in precision or "bfloat16" in precision
            label = f"openvino {'bf16' if bf16 else 'fp32'} (peer)"
            request = compiled.create_infer_request()
            paths.append((label, lambda t, r=request: r.infer({0: t.numpy()}),
                          torch.bfloat16 if bf16 else torch.float32))
            if bf16 and torch.float32 in chosen:  # and as a user asking for float32 runs it
                compiled32 = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                request32 = compiled32.create_infer_request()
                paths.append(("openvino fp32 (peer)", lambda t, r=request32: r.infer({0: t.numpy()}),
                              torch.float32))
        if "torch.compile" in wanted:
            start = time.perf_counter()
            compiled_model = torch.compile(reference.eval())
            with torch.inference_mode():
                compiled_model(x)
            label = "torch.compile fp32 (peer)"
            notes[label] = f"compile {time.perf_counter() - start:.0f} s"
            paths.append((label, compiled_model, torch.float32))
        for dtype in chosen:
            for backend in ("onnxruntime", "openvino"):
                if not have[backend] or (backend == "onnxruntime" and dtype == torch.bfloat16):
                    continue
                try:
                    fast = runtimes.build_runtime(model, backend, dtype)
                except Exception as e:  # a runtime that cannot run this model here: say so
                    log.warning("resnet_zoo %s %s: %s", backend, _tag(dtype), e)
                    continue
                paths.append((f"resnet_zoo {backend} {_tag(dtype)}", fast, dtype))
            auto = optimize_for_inference(model, dtype=dtype, backend="auto", batch_size=x.shape[0])
            label = f"resnet_zoo auto {_tag(dtype)}"
            notes[label] = f"backend {auto.backend}"
            paths.append((label, auto, dtype))
    if int8 and have["onnxruntime"]:
        calibration = torch.randn(64, *x.shape[1:], generator=torch.Generator().manual_seed(0))
        for backend in ("onnxruntime", "openvino"):
            if have[backend]:
                fast = runtimes.build_runtime(model, backend, "int8", calibration=calibration, check=False)
                paths.append((f"resnet_zoo {backend} int8", fast, "int8"))


def bench_models(names: Sequence[str], **kwargs) -> list[BenchResult]:
    """Every row of :func:`iter_bench` in one list (same arguments)."""
    return [row for rows in iter_bench(names, **kwargs) for row in rows]


def machine_description() -> str:
    """CPU model, cores, torch's ISA and fast dtypes, torch version: the record beside a figure."""
    return cpu.cpu_capabilities().describe()
