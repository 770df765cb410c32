"""Where a job runs, and what that device does fast: the GPU twin of :mod:`resnet_zoo.cpu`.

The one module that asks ``torch.cuda``: it resolves a device spec (``"auto"``, ``"cpu"``,
``"cuda"``, ``"cuda:N"`` or a ``torch.device``), says what this machine's GPUs are and which
dtypes they run fast, and holds the few device calls every job needs: synchronise, time a span,
pin host memory, read the peak memory. Every other module asks here.

``"auto"`` is CUDA where there is a GPU, else the CPU; under torchrun, rank r's ``"auto"`` and
``"cuda"`` are ``cuda:LOCAL_RANK``. A spec this machine cannot honour is a one-line
:class:`~resnet_zoo.errors.ConfigError` naming what the machine has.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError
from .util.dist import local_rank

__all__ = [
    "DEVICE_HELP",
    "GpuFacts",
    "cuda_available",
    "cuda_device_count",
    "resolve_device",
    "gpu_facts",
    "fast_dtype",
    "half_dtype",
    "make_current",
    "deterministic",
    "synchronize",
    "Stopwatch",
    "pin",
    "Stager",
    "reset_peak_memory",
    "peak_memory",
    "describe_gpus",
    "driver_version",
    "tf32",
]

DEVICE_HELP = "auto (CUDA where there is a GPU, else the CPU), cpu, cuda or cuda:N"
_CUDA = re.compile(r"cuda(?::(\d{1,3}))?")


def cuda_available() -> bool:
    """True where torch has CUDA and finds a GPU."""
    return bool(torch.cuda.is_available())


def cuda_device_count() -> int:
    return int(torch.cuda.device_count()) if cuda_available() else 0


def _no_cuda_reason() -> str:
    built = getattr(torch.version, "cuda", None)
    if not built:
        return f"torch {torch.__version__} is built without CUDA"
    return f"torch {torch.__version__} (CUDA {built}) finds no GPU"


def _has() -> str:
    """What this machine has, in words, for an error message."""
    n = cuda_device_count()
    if n == 0:
        return f"no CUDA device ({_no_cuda_reason()})"
    names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(n))
    return f"{n} CUDA device{'s' if n > 1 else ''}: {names}"


def resolve_device(spec: Any = "auto", *, what: str = "device") -> torch.device:
    """``spec`` as a ``torch.device`` this machine has.

    ``None`` or ``"auto"``: ``cuda:LOCAL_RANK`` where CUDA is there, else the CPU. ``"cuda"``:
    this rank's GPU. ``"cuda:N"``: GPU N. A spec that is not a device, CUDA where there is none,
    or N past the device count: :class:`ConfigError` naming ``what`` (``--device``) and what
    this machine has."""
    if spec is None:
        spec = "auto"
    if isinstance(spec, torch.device):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ConfigError(f"{what} must be a string or a torch.device ({DEVICE_HELP}), got {type(spec).__name__}")
    text = spec.strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    count = cuda_device_count()
    if text == "auto":
        return torch.device("cuda", local_rank() % count) if count else torch.device("cpu")
    m = _CUDA.fullmatch(text)
    if m is None:
        raise ConfigError(f"{what} {spec[:40]!r} is not a device this project runs on: expected {DEVICE_HELP}")
    if count == 0:
        raise ConfigError(f"{what} {spec}: this machine has {_has()}; use {what} cpu (or auto)")
    index = int(m[1]) if m[1] is not None else local_rank() % count
    if index >= count:
        raise ConfigError(f"{what} {spec}: this machine has {_has()}")
    return torch.device("cuda", index)


@dataclass(frozen=True)
class GpuFacts:
    """One GPU: its name, compute capability, memory and what it computes fast."""

    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int
    multiprocessors: int

    @property
    def bf16(self) -> bool:
        """bfloat16 tensor cores: compute capability 8.0 (Ampere) and later."""
        return self.capability >= (8, 0)

    @property
    def tf32(self) -> bool:
        return self.capability >= (8, 0)

    @property
    def fast_dtypes(self) -> tuple[str, ...]:
        return ("bfloat16", "float16", "tf32") if self.bf16 else ("float16",)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": f"cuda:{self.index}",
            "name": self.name,
            "compute_capability": f"{self.capability[0]}.{self.capability[1]}",
            "memory_gib": round(self.memory_bytes / 2**30, 1),
            "multiprocessors": self.multiprocessors,
            "fast_dtypes": list(self.fast_dtypes),
        }


def gpu_facts() -> list[GpuFacts]:
    """Every GPU torch sees (none on a CPU-only machine)."""
    out = []
    for i in range(cuda_device_count()):
        p = torch.cuda.get_device_properties(i)
        out.append(GpuFacts(i, p.name, (p.major, p.minor), int(p.total_memory), int(p.multi_processor_count)))
    return out


def half_dtype(device: torch.device) -> torch.dtype:
    """The 16-bit dtype a GPU runs fast: bfloat16 from compute capability 8.0, float16 below."""
    major, minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if (major, minor) >= (8, 0) else torch.float16


def fast_dtype(device: torch.device) -> torch.dtype:
    """The fastest compute dtype on ``device``: on a GPU its 16-bit dtype (:func:`half_dtype`),
    on the CPU what :func:`resnet_zoo.cpu.best_dtype` says."""
    if device.type == "cuda":
        return half_dtype(device)
    from . import cpu

    return cpu.best_dtype()


def tf32(enabled: bool) -> None:
    """TF32 matmuls and convolutions on (Ampere and later) or off, for this process."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def deterministic() -> None:
    """Deterministic algorithms only, for this process: two runs of the same work on the same
    device give bit-identical results (cuBLAS's workspace fixed, cuDNN's search off); an
    operation without a deterministic kernel raises instead of running."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def make_current(device: torch.device) -> None:
    """Make a GPU the current one of this process (NCCL and bare ``.cuda()`` calls use it)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Seconds of a span of work on ``device``: CUDA events on a GPU (what the device did,
    without the host's launch overhead), ``perf_counter`` on the CPU.

    ``with Stopwatch(dev) as sw: ...; sw.seconds``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = 0.0
        self._events: tuple[Any, Any] | None = None
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self._events = (start, end)
            start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._events is not None:
            start, end = self._events
            end.record()
            end.synchronize()
            self.seconds = start.elapsed_time(end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self._t0


def pin(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` in page-locked memory where it is bound for a GPU (so that the copy can be
    asynchronous), else itself."""
    return tensor.pin_memory() if device.type == "cuda" and cuda_available() else tensor


class Stager:
    """Host batches onto ``device`` one ahead of the model: on a GPU each copy (from pinned
    memory, ``non_blocking``) and what follows it (``finish``: normalise, cast) run on a side
    stream, so that they overlap the model's work on the current stream; :meth:`ready` makes the
    current stream wait for a staged batch before it is used. On the CPU a batch is ``finish``
    of itself."""

    def __init__(self, device: torch.device, finish: Any) -> None:
        self.device, self.finish = device, finish
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def stage(self, batch: torch.Tensor) -> torch.Tensor:
        if self.stream is None:
            return self.finish(batch.to(self.device))
        with torch.cuda.stream(self.stream):
            return self.finish(batch.to(self.device, non_blocking=True))

    def ready(self, staged: torch.Tensor) -> torch.Tensor:
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            staged.record_stream(current)  # its memory is not reused before the model is done
        return staged


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Bytes at the peak since the last reset (``max_memory_allocated``); None on the CPU."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def driver_version() -> str | None:
    """The NVIDIA driver's version (``nvidia-smi``), or None where there is none."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def describe_gpus(facts: list[GpuFacts] | None = None) -> list[str]:
    """Lines for ``resnet-zoo info --device``: each GPU, or why there is none."""
    facts = gpu_facts() if facts is None else facts
    if not facts:
        return [f"no CUDA device: {_no_cuda_reason()}; jobs run on the CPU (see `resnet-zoo cpu`)"]
    lines = [f"torch {torch.__version__}, CUDA {torch.version.cuda}, {len(facts)} GPU(s)"]
    for f in facts:
        d = f.to_dict()
        lines.append(
            f"{d['device']}: {f.name}, compute capability {d['compute_capability']}, {d['memory_gib']} GiB, "
            f"{f.multiprocessors} SMs; fast: {', '.join(f.fast_dtypes)}"
            + ("" if f.bf16 else " (no bfloat16 tensor cores below 8.0: AMP uses float16 with a GradScaler)")
        )
    return lines
