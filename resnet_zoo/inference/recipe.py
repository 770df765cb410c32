"""How to build a model for inference, as data: a registered name, its weights, and the fast
path's settings. The command line builds its models from one, and a recipe pickles, so that
another process (a Ray actor on another node) builds the same model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, cast

from ..device import resolve_device
from ..errors import ConfigError
from ..factory import create
from .auto import BACKENDS, optimize_for_inference
from .model_view import Model, compute_of

__all__ = ["ModelRecipe", "DTYPES", "BACKEND_CHOICES"]

log = logging.getLogger(__name__)

# The fast path's compute dtypes; "auto" is the fastest float dtype of the device it runs on
# (float16: GPUs only, for those without bfloat16).
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")
# What runs the fast path: a backend, or "auto", the fastest installed here (timed once, cached).
BACKEND_CHOICES = ("torch", "auto", *BACKENDS[1:])


@dataclass(frozen=True)
class ModelRecipe:
    """``create(name, pretrained=pretrained)`` in eval mode, then, with ``fast``,
    :func:`~resnet_zoo.optimize_for_inference` (``dtype``, ``backend``, ``batch_size``,
    ``calibration``) on ``device`` (``"auto"``: a GPU where there is one, else the CPU; the GPU
    fast path is the torch backend's: batch norm folded, channels-last, bf16 or fp16)."""

    name: str
    pretrained: Any = True
    fast: bool = True
    dtype: str = "auto"
    backend: str = "torch"
    batch_size: int = 64
    calibration: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"backend must be one of {list(BACKEND_CHOICES)}, got {self.backend!r}")
        if self.fast and self.dtype == "int8" and not self.calibration:
            raise ConfigError("--dtype int8 needs --calibration DIR (up to 512 training images)")
        if not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))  # a torch.device: kept as text (it pickles)

    def where(self) -> str:
        """The device spec to build on: ``"auto"`` is the CPU for what only the CPU runs (the
        onnxruntime and OpenVINO backends, int8), else this recipe's ``device``."""
        cpu_only = self.fast and (self.backend not in ("torch", "auto") or self.dtype == "int8")
        return "cpu" if self.device == "auto" and cpu_only else self.device

    @property
    def on_gpu(self) -> bool:
        return resolve_device(self.where()).type != "cpu"

    def build(self) -> Model:
        device = resolve_device(self.where(), what="--device")
        model = create(self.name, pretrained=self.pretrained).eval()
        if not self.fast:
            return model.to(device)
        # batch_size is read by backend="auto" (and calibration by int8) only.
        fast = optimize_for_inference(
            model, dtype=self.dtype, backend=self.backend, batch_size=self.batch_size, calibration=self.calibration,
            device=device,
        )  # fmt: skip
        log.info("fast path: %s, %s", fast.backend, str(fast.dtype).replace("torch.", ""))
        return cast(Model, fast)

    def pinned(self, model: Model) -> ModelRecipe:
        """This recipe with ``dtype`` and ``backend`` as ``model`` (built from it) resolved them,
        so that every process building it computes the same numbers, whatever its CPU would
        pick for ``"auto"``."""
        if not self.fast:
            return self
        backend, dtype, _ = compute_of(model)
        dtype = str(dtype).replace("torch.", "")
        return replace(self, dtype="int8" if self.dtype == "int8" else dtype, backend=backend)
