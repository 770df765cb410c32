"""``optimize_for_inference``: the torch fast path, a runtime, or the fastest of them here.

``backend="auto"`` times the candidates on this CPU at the batch size asked for, keeps the
fastest, and caches the choice per CPU, architecture, input size, batch and dtype (a JSON file in
``RESNET_ZOO_CACHE``, default ``~/.cache/resnet_zoo``), so the calibration runs once. This module
stands above both :mod:`.torch_path` and :mod:`.runtimes` and builds its candidates itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, cast

import torch
from torch import nn

from .. import cpu
from ..device import gpu_facts, resolve_device
from ..errors import ConfigError, ResNetZooError
from ..model import ResNetBase, ResNetFeatures
from ..util.atomic import write_text_atomic
from ..util.checks import check_positive_int
from .runtimes import (
    CACHE_ENV,
    RUNTIME_MODULES,
    RUNTIMES,
    build_runtime,
    images_to_tensor,
    input_size,
    ort_cuda_available,
)
from .timing import SETTLE_S, device_seconds_per_batch, time_images_per_second
from .torch_path import cuda_fast_path, gpu_dtype, torch_fast_path

__all__ = [
    "BACKENDS",
    "optimize_for_inference",
    "available_backends",
    "candidates_for",
    "choose_backend",
    "calibration_cache_path",
]

log = logging.getLogger(__name__)

BACKENDS = ("torch", *RUNTIMES)


def available_backends() -> list[str]:
    """The backends that can run here: torch, and each runtime that is installed."""
    return ["torch"] + [b for b in RUNTIMES if importlib.util.find_spec(RUNTIME_MODULES[b]) is not None]


def optimize_for_inference(
    model: ResNetBase,
    *,
    dtype: torch.dtype | str = torch.float32,
    channels_last: bool = True,
    backend: str = "torch",
    batch_size: int = 16,
    calibration: Any = None,
    device: Any = "auto",
    compile: bool | str = False,
) -> nn.Module:
    """An eval-mode copy of ``model`` for fast inference on ``device`` (the original is untouched).

    Batch norm folded into the convs, activations channels-last, optional bfloat16 compute.
    Takes the same float32 NCHW input as ``model`` and returns float32 output.

    Args:
        model: a :class:`ResNet`, :class:`ResNetBase` or :class:`ResNetFeatures`.
        dtype: ``torch.float32``; ``torch.bfloat16`` (CPUs with AVX512-BF16 or AMX only: elsewhere
            a :class:`ConfigError` says so at once); or ``"auto"``, the fastest of the two on
            this CPU (see :func:`resnet_zoo.cpu.cpu_capabilities`).
            ``"int8"``: static post-training quantization (onnxruntime or OpenVINO backends),
            calibrated on ``calibration``.
        channels_last: keep activations NHWC, the layout oneDNN's CPU convolutions prefer.
        backend: ``"torch"`` (this function's folded torch model); ``"onnxruntime"`` or
            ``"openvino"`` (the model exported to ONNX and run by that runtime: ``pip install
            'resnet_zoo[runtimes]'``); ``"auto"``: the fastest of those installed, timed here at
            ``batch_size`` once and cached per CPU, architecture, batch and dtype. Every result
            says what runs in its ``backend`` attribute and is checked against the eager model
            when built (float32 relative error <= 1e-4, bfloat16 cosine >= 0.999).
        batch_size: the batch size ``backend="auto"`` chooses for.
        calibration: for ``dtype="int8"``: up to 512 training images, as image files or
            directories, or a float32 ``[N, C, H, W]`` tensor already preprocessed.
        device: where it computes: ``"auto"`` (a GPU where there is one, else the CPU),
            ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``. On a GPU the torch
            backend runs (``backend="auto"`` picks it), and ``dtype="auto"`` is the GPU's 16-bit
            dtype (bfloat16 from compute capability 8.0, float16 below); the result is checked
            against the float32 eager model when built (cosine >= 0.999). Input may be on the
            CPU or the GPU; the output is on the input's device.
        compile: ``True`` (or the name of a ``torch.compile`` backend; True is inductor): the
            torch backend's model through ``torch.compile`` without dynamic shapes, batches
            padded to powers of two up to ``batch_size`` (larger ones in chunks of it), so that
            a run compiles once per bucket and its last, smaller batch never recompiles.
    """
    if not isinstance(model, ResNetBase):
        raise ConfigError(f"optimize_for_inference takes a resnet_zoo model, got {type(model).__name__}")
    if backend not in ("auto", *BACKENDS):
        raise ConfigError(f"backend must be one of {['auto', *BACKENDS]}, got {backend!r}")
    where = resolve_device(device)
    if compile:
        check_positive_int("batch_size", batch_size)
        if backend not in ("auto", "torch") or dtype == "int8":
            raise ConfigError("compile=True compiles the torch backend: use backend='torch' and a float dtype")
        if where.type == "cuda":
            built = cuda_fast_path(model, gpu_dtype(dtype, where), channels_last, where)
        else:
            built = torch_fast_path(model, cpu.resolve_dtype(dtype), channels_last, device=where, allow_mkldnn=False)
        return built.compile_buckets(batch_size, "inductor" if compile is True else str(compile))
    if where.type == "cuda":
        return _on_gpu(model, dtype, channels_last, backend, batch_size, where)
    if dtype != "int8":
        dtype = cpu.resolve_dtype(dtype, on_cpu=True)
    if backend == "torch" and dtype == "int8":
        raise ConfigError(
            "int8 runs on the onnxruntime or openvino backends: pass backend='auto', 'onnxruntime' or 'openvino'"
        )
    if backend == "torch" or (backend == "auto" and isinstance(model, ResNetFeatures)):
        return torch_fast_path(model, cast(torch.dtype, dtype), channels_last, device=where)

    images = None if calibration is None else images_to_tensor(calibration, model)
    if backend != "auto":
        return build_runtime(model, backend, dtype, calibration=images)
    check_positive_int("batch_size", batch_size)
    candidates = candidates_for(model, dtype, channels_last=channels_last, calibration=images)
    if not candidates:
        raise ConfigError(f"no installed backend runs {dtype}: pip install 'resnet_zoo[runtimes]'")
    name, fast, speeds = choose_backend(model, candidates, batch_size=batch_size, dtype=dtype)
    log.info(
        "backend='auto' chose %s (%s images/s at batch %d)",
        name,
        ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()),
        batch_size,
    )
    return fast


def _on_gpu(
    model: ResNetBase, dtype: Any, channels_last: bool, backend: str, batch_size: int, where: torch.device
) -> nn.Module:
    """The GPU's backends: the torch fast path (cast to ``dtype``), onnxruntime's CUDA provider
    (float32), or with ``"auto"`` the faster of those installed, and of the torch path
    compiled, timed here at ``batch_size`` with CUDA events and cached per GPU."""
    if backend not in ("auto", "torch", "onnxruntime"):
        raise ConfigError(f"backend {backend!r} runs on the CPU; on {where} use 'torch', 'onnxruntime' or 'auto'")
    half = gpu_dtype(dtype, where)
    if backend == "torch" or (backend == "auto" and isinstance(model, ResNetFeatures)):
        return cuda_fast_path(model, half, channels_last, where)
    if backend == "onnxruntime":  # float32 ("auto" included): its CUDA provider's dtype here
        return build_runtime(model, "onnxruntime", torch.float32 if dtype == "auto" else half, device=where)
    check_positive_int("batch_size", batch_size)
    candidates: dict[str, Callable[[], nn.Module]] = {
        "torch": lambda: cuda_fast_path(model, half, channels_last, where),
        "torch compiled": lambda: cuda_fast_path(model, half, channels_last, where).compile_buckets(batch_size),
    }
    if ort_cuda_available():
        candidates["onnxruntime"] = lambda: build_runtime(model, "onnxruntime", torch.float32, device=where)
    name, fast, speeds = choose_backend(
        model, candidates, batch_size=batch_size, dtype=half, timer=partial(time_on_device, device=where), device=where
    )
    log.info("backend='auto' on %s chose %s (%s images/s)", where, name, speeds)
    return fast


def time_on_device(fast: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Images/s of ``fast`` on a batch moved to ``device``: warm-up (a compile), then 10 batches
    timed with CUDA events."""
    (seconds,) = device_seconds_per_batch(fast, x.to(device), device, iters=10, repeats=1, warmup=2)
    return x.shape[0] / seconds


def calibration_cache_path() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "resnet_zoo")
    return Path(root) / "backends.json"


def _key(model: ResNetBase, batch_size: int, dtype: Any, device: torch.device | None = None) -> str:
    arch = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    name = "int8" if dtype == "int8" else str(dtype).replace("torch.", "")
    where = cpu.cpu_capabilities().slug
    if device is not None and device.type == "cuda":
        gpu = next((g for g in gpu_facts() if g.index == device.index), None)
        where = "cuda-" + (gpu.name.replace(" ", "-") if gpu else "unknown")
    return f"{where}|{model.arch_name or 'custom'}-{arch}|{input_size(model)}|b{batch_size}|{name}"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(calibration_cache_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def time_backend(fast: nn.Module, x: torch.Tensor) -> float:
    """One calibration round: a pause for the previous candidate's threads to go idle, a warm-up
    batch, then images/s over 2 batches."""
    return time_images_per_second(fast, x, iters=2, warmup=1, repeats=1, settle=SETTLE_S)


def choose_backend(
    model: ResNetBase,
    candidates: dict[str, Callable[[], nn.Module]],
    *,
    batch_size: int,
    dtype: Any,
    timer: Callable[[nn.Module, torch.Tensor], float] | None = None,
    use_cache: bool = True,
    rounds: int = 3,
    device: torch.device | None = None,
) -> tuple[str, nn.Module, dict[str, float]]:
    """Build each candidate, time it at ``batch_size`` and keep the fastest. The choice is cached
    per CPU (or GPU), architecture, input size, batch and dtype; a cached choice builds only the winner."""
    key = _key(model, batch_size, dtype, device)
    timer = timer or time_backend
    if use_cache:
        cached = _read_cache().get(key)
        if isinstance(cached, dict) and cached.get("backend") in candidates:
            log.info("backend for %s: %s (cached calibration)", key, cached["backend"])
            return cached["backend"], candidates[cached["backend"]](), dict(cached.get("images_per_s", {}))
    size = input_size(model)
    x = torch.randn(batch_size, model.config.img_channels, size, size, generator=torch.Generator().manual_seed(0))
    built: dict[str, nn.Module] = {}
    for name, build in candidates.items():
        try:
            built[name] = build()
        except ResNetZooError as e:
            log.warning("backend %s skipped: %s", name, e)
    # Rounds alternate between the candidates (best round kept), so a slow spell of the machine
    # hits them all alike instead of deciding the choice.
    speeds: dict[str, float] = {name: 0.0 for name in built}
    for _ in range(rounds):
        for name, fast in built.items():
            speeds[name] = max(speeds[name], timer(fast, x))
    for name, ips in speeds.items():
        log.info("calibration %s: %s %.1f images/s", key, name, ips)
    if not speeds:
        raise ConfigError(f"no backend could run {model.arch_name or 'this model'} in {dtype}")
    best = max(speeds, key=lambda name: speeds[name])
    if use_cache:
        data = _read_cache()
        data[key] = {"backend": best, "images_per_s": speeds}
        try:
            write_text_atomic(calibration_cache_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            log.warning("could not cache the backend calibration in %s: %s", calibration_cache_path(), e)
    return best, built[best], speeds


def candidates_for(
    model: ResNetBase, dtype: Any, *, channels_last: bool = True, calibration: torch.Tensor | None = None
) -> dict[str, Callable[[], nn.Module]]:
    """The backends that can run ``model`` in ``dtype`` here, each as a builder: the torch fast
    path (not for int8) and every installed runtime."""
    out: dict[str, Callable[[], nn.Module]] = {}
    for name in available_backends():
        if name == "torch":
            if dtype != "int8":
                out[name] = lambda: torch_fast_path(model, dtype, channels_last)
            continue
        if dtype == torch.bfloat16 and name == "onnxruntime":
            continue
        if dtype == "int8" and importlib.util.find_spec("onnxruntime") is None:
            continue
        out[name] = partial(build_runtime, model, name, dtype, calibration=calibration)
    return out
