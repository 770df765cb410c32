"""The two pieces a Ray Data batch-inference pipeline composes (``pip install 'resnet_zoo[ray]'``).

- :class:`Preprocessor`: for ``map_batches`` on CPU tasks. It decodes and resizes images with
  the weights' own preprocessing (exactly :class:`~resnet_zoo.inference.images.Preprocess`), from a
  ``path`` column (``ray.data.from_items``, a parquet or CSV column of paths) or from the
  ``image`` column of ``ray.data.read_images(..., include_paths=True)``.
- :class:`FeatureExtractor`: a callable class for ``map_batches`` on actors. Each actor loads
  the model once (weights, fast path, device, dtype) and turns a batch into
  ``{"path", "features"}``.

::

    ds = ray.data.from_items([{"path": p} for p in paths])
    ds = ds.map_batches(Preprocessor("resnet50", pretrained=True), batch_size=64)
    ds = ds.map_batches(FeatureExtractor, fn_constructor_kwargs={"name": "resnet50"},
                        concurrency=actor_pool(), batch_size=64)   # num_gpus=1 on GPU nodes

:func:`actor_pool` sizes the extractor actors to leave a CPU to the read and preprocessing
tasks: on a 2-CPU machine two 1-CPU actors took both and the pipeline stalled.

Nothing here imports ray at import time: Ray imports this module in its workers, and
``import resnet_zoo`` never imports ray.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from ..inference.images import Preprocess
from ..inference.recipe import ModelRecipe

__all__ = ["Preprocessor", "FeatureExtractor", "actor_pool"]


def actor_pool(cpus_per_actor: float = 1.0, reserve_cpus: float = 1.0) -> tuple[int, int]:
    """``concurrency=`` for the :class:`FeatureExtractor` stage: from 1 to as many actors of
    ``cpus_per_actor`` as the running Ray cluster holds beside ``reserve_cpus`` for the read and
    preprocessing tasks (at least 1). Actors that take every CPU starve those tasks, and the
    pipeline waits for ever."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    return 1, max(1, int((cpus - reserve_cpus) // cpus_per_actor))


class Preprocessor:
    """``batch -> {"path": [...], "pixels": float32 [B, C, H, W]}`` with the preprocessing of
    ``name``'s weights (``pretrained`` as for :func:`resnet_zoo.create`). Rows that cannot be
    read raise :class:`~resnet_zoo.errors.InputError` naming the file."""

    def __init__(self, name: str, pretrained: Any = True) -> None:
        model = ModelRecipe(name, pretrained=pretrained, fast=False).build()
        self.transform = Preprocess(model.pretrained_cfg.preprocessing, channels=model.config.img_channels)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        if "image" in batch:  # ray.data.read_images: HWC uint8 arrays
            from PIL import Image

            images = [Image.fromarray(np.asarray(a)) for a in batch["image"]]
            paths = [str(p) for p in batch.get("path", [""] * len(images))]
            tensors = [self.transform(img) for img in images]
        elif "path" in batch:
            paths = [str(p) for p in batch["path"]]
            tensors = [self.transform(p) for p in paths]
        else:
            raise InputError(f"a batch needs a 'path' or an 'image' column, got {sorted(batch)}")
        channels = self.transform.channels
        size = self.transform.config.input_size
        pixels = torch.stack(tensors).numpy() if tensors else np.empty((0, channels, size, size), np.float32)
        return {"path": np.asarray(paths, dtype=object), "pixels": pixels}


class FeatureExtractor:
    """A Ray Data actor: loads ``name`` once and maps ``{"path", "pixels"}`` batches to
    ``{"path", "features"}`` (float32 ``[B, C]`` pooled features).

    ``fast=True`` runs :func:`~resnet_zoo.optimize_for_inference` (``dtype``: ``"auto"``,
    ``"float32"`` or ``"bfloat16"``) on CPU; ``device="cuda"`` runs the eager model there.
    """

    def __init__(
        self, name: str, pretrained: Any = True, *, fast: bool = True, device: str = "cpu", dtype: str = "auto"
    ) -> None:
        self.device = torch.device(device)
        self.model = ModelRecipe(name, pretrained=pretrained, fast=fast, dtype=dtype, device=device).build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pixels = torch.from_numpy(batch["pixels"]).to(self.device)
        with torch.inference_mode():
            features = self.model.forward_pooled(pixels).float().cpu().numpy()
        return {"path": batch["path"], "features": features}
