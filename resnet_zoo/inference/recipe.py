"""How to build a model for inference, as data: a registered name, its weights, and the fast
path's settings. The command line builds its models from one, and a recipe pickles, so that
another process (a Ray actor on another node) builds the same model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, cast

import torch

from ..errors import ConfigError
from ..factory import create
from .auto import BACKENDS, optimize_for_inference
from .model_view import Model, compute_of

__all__ = ["ModelRecipe", "DTYPES", "BACKEND_CHOICES"]

log = logging.getLogger(__name__)

# The fast path's compute dtypes; "auto" is the fastest float dtype of the CPU it runs on.
DTYPES = ("auto", "float32", "bfloat16", "int8")
# What runs the fast path: a backend, or "auto", the fastest installed here (timed once, cached).
BACKEND_CHOICES = ("torch", "auto", *BACKENDS[1:])


@dataclass(frozen=True)
class ModelRecipe:
    """``create(name, pretrained=pretrained)`` in eval mode, then, with ``fast``,
    :func:`~resnet_zoo.optimize_for_inference` (``dtype``, ``backend``, ``batch_size``,
    ``calibration``). ``device="cuda"`` runs the eager model on the GPU (the fast path is a CPU
    path)."""

    name: str
    pretrained: Any = True
    fast: bool = True
    dtype: str = "auto"
    backend: str = "torch"
    batch_size: int = 64
    calibration: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"backend must be one of {list(BACKEND_CHOICES)}, got {self.backend!r}")
        if self.fast and self.dtype == "int8" and not self.calibration:
            raise ConfigError("--dtype int8 needs --calibration DIR (up to 512 training images)")

    @property
    def on_gpu(self) -> bool:
        return torch.device(self.device).type != "cpu"

    def build(self) -> Model:
        model = create(self.name, pretrained=self.pretrained).eval()
        if self.on_gpu or not self.fast:
            return model.to(self.device)
        if self.backend == "torch" and self.dtype != "int8":
            fast = optimize_for_inference(model, dtype=self.dtype)
        else:
            fast = optimize_for_inference(
                model, dtype=self.dtype, backend=self.backend, batch_size=self.batch_size, calibration=self.calibration
            )
        log.info("fast path: %s, %s", fast.backend, str(fast.dtype).replace("torch.", ""))
        return cast(Model, fast)

    def pinned(self, model: Model) -> ModelRecipe:
        """This recipe with ``dtype`` and ``backend`` as ``model`` (built from it) resolved them,
        so that every process building it computes the same numbers, whatever its CPU would
        pick for ``"auto"``."""
        if self.on_gpu or not self.fast:
            return self
        backend, dtype, _ = compute_of(model)
        dtype = str(dtype).replace("torch.", "")
        return replace(self, dtype="int8" if self.dtype == "int8" else dtype, backend=backend)
