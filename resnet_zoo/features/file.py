"""One ``.safetensors`` file of pooled features, for small jobs.

The file holds one tensor, ``features`` ``[N, C]``; its metadata holds the image paths in row
order (``paths``, a JSON list), the model and the weights. It is written to a temporary name
and renamed, so a reader never sees a partial file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from ..errors import CheckpointError, ConfigError
from ..inference.model_view import Model
from ..inference.predict import extract_features
from ..pretrained.files import load_safetensors
from ..util.atomic import atomic_write
from .format import decode_paths, encode_paths

__all__ = ["FeaturesFile", "write_features", "read_features"]


@dataclass(frozen=True)
class FeaturesFile:
    """What :func:`write_features` wrote, or :func:`read_features` read."""

    path: Path
    features: torch.Tensor  # [N, C]
    paths: list[str]  # the image of each row
    model: str
    weights: str

    def to_dict(self) -> dict:
        """What ``resnet-zoo features ... --out FILE.safetensors --json`` prints."""
        return {"file": str(self.path), "images": self.features.shape[0], "features": self.features.shape[1]}


def write_features(
    model: Model,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    model_name: str | None = None,
    device: Any = None,
    decode: str = "cpu",
) -> FeaturesFile:
    """Extract pooled features of every image in ``inputs`` (files and directories) with
    :func:`~resnet_zoo.extract_features` (on ``device``: default where the model is) and write
    them to ``out`` (``.safetensors``)."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"the features file must be a .safetensors file, got {str(out)!r}")
    feats, paths = extract_features(
        model, inputs, batch_size=batch_size, num_workers=num_workers, skip_bad=skip_bad, progress=progress,
        device=device, decode=decode,
    )  # fmt: skip
    info = model.pretrained_info
    name = model_name or model.arch_name or "custom"
    weights = (info.name or info.source) if info is not None else "random init"
    metadata = {
        "paths": encode_paths(paths, out),
        "model": name,
        "weights": weights,
        "shape": json.dumps(list(feats.shape)),
    }
    with atomic_write(out) as tmp:
        save_file({"features": feats.contiguous()}, str(tmp), metadata=metadata)
    return FeaturesFile(out, feats, [str(p) for p in paths], name, weights)


def read_features(path: str | os.PathLike) -> FeaturesFile:
    """The features, image paths, model and weights of a file :func:`write_features` wrote."""
    tensors, metadata = load_safetensors(path)
    feats = tensors.get("features")
    if feats is None or feats.dim() != 2:
        raise CheckpointError(f"{path} is not a resnet_zoo features file (no [N, C] 'features' tensor)")
    paths = decode_paths(metadata, feats.shape[0], path)
    return FeaturesFile(Path(path), feats, paths, metadata.get("model", ""), metadata.get("weights", ""))
