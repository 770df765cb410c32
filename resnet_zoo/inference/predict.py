"""Models over image files: batched feature extraction and top-k prediction, on any model
(eager, the fast path, a runtime)."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader

from ..device import Stager, resolve_device
from ..errors import ConfigError, InputError
from ..manifest import read_labels
from ..model import ResNetFeatures
from ..util.checks import check_int, check_positive_int, is_int
from ..util.progress import advance
from .device_decode import DeviceDecoder, RawFiles, check_decode, collate_raw, decoded_batches, read_local_bytes
from .images import ImageFiles, Preprocess, collate_images, find_images
from .model_view import Model, ModelView, compute_of, unwrap

__all__ = [
    "extract_features",
    "predict",
    "Prediction",
    "PooledFeatures",
    "on_device",
    "device_batches",
    "image_batches",
]

log = logging.getLogger(__name__)

# --- Features and predictions for image files -------------------------------------------------


def image_batches(
    paths: Sequence[Any], preprocess: Preprocess, device: torch.device, *, decode: str, num_workers: int,
    batch_size: int | None = None, batch_sampler: list[list[int]] | None = None,
    wrap: Callable[[Callable], Callable] | None = None, read: Callable[[Any], bytes] = read_local_bytes,
):  # fmt: skip
    """``(indices, batch on device or None, errors)`` of ``paths`` in batches (of ``batch_size``,
    or as ``batch_sampler`` groups them), on ``device``, for any model:

    - ``decode="gpu"``: ``num_workers`` processes ``read`` the files, and the device decodes
      each batch (:class:`~resnet_zoo.inference.device_decode.DeviceDecoder`);
    - on a GPU, the workers decode uint8 crops into pinned memory and the GPU normalises them,
      one batch ahead (:func:`device_batches`);
    - on the CPU, the workers give normalised float batches.

    ``wrap``: what makes the transform take the caller's sources (URIs, for feature sets)."""
    grouping: dict[str, Any] = {"batch_size": batch_size} if batch_sampler is None else {"batch_sampler": batch_sampler}
    if decode == "gpu":
        raw = DataLoader(RawFiles(paths, read), num_workers=num_workers, collate_fn=collate_raw, **grouping)
        return decoded_batches(raw, DeviceDecoder(preprocess, device), paths)
    gpu = device.type == "cuda"
    transform: Callable = preprocess.uint8 if gpu else preprocess
    loader = DataLoader(
        ImageFiles(paths, transform if wrap is None else wrap(transform)),
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=gpu,
        **grouping,
    )
    return device_batches(loader, device, preprocess)


def on_device(model: Model, device: Any) -> Model:
    """``model`` computing on ``device`` (None: where it is). An eager model on another device
    is copied there (the caller's stays where it was); a view built for another device is a
    ConfigError saying how to build it for this one."""
    if device is None:
        return model
    where = resolve_device(device)
    backend, _, now = compute_of(model)
    if now == where or (now.type == where.type == "cpu"):
        return model
    if backend != "eager":
        raise ConfigError(
            f"this {backend} model was built for {now}; build it for {where} with "
            f"optimize_for_inference(model, device={str(where)!r})"
        )
    return copy.deepcopy(model).to(where)


def device_batches(loader: Any, device: torch.device, preprocess: Preprocess):
    """``(indices, batch on device or None, errors)``: on a GPU the loader's uint8 batches are
    copied and normalised there one batch ahead of the model (:class:`~resnet_zoo.device.Stager`)."""
    if device.type != "cuda":
        yield from loader
        return
    stager = Stager(device, preprocess.normalize)
    pending = None
    for indices, batch, errors in loader:
        staged = None if batch is None else stager.stage(batch)
        if pending is not None:
            yield pending[0], None if pending[1] is None else stager.ready(pending[1]), pending[2]
        pending = (indices, staged, errors)
    if pending is not None:
        yield pending[0], None if pending[1] is None else stager.ready(pending[1]), pending[2]


def _run_over_images(
    model: Model,
    inputs: Iterable[str | os.PathLike],
    *,
    batch_size: int,
    num_workers: int,
    skip_bad: bool,
    progress: bool,
    desc: str,
    decode: str = "cpu",
):
    from tqdm.auto import tqdm

    paths = find_images(inputs)
    config = model.config
    preprocess = Preprocess(model.pretrained_cfg.preprocessing, channels=config.img_channels)
    device = compute_of(model)[2]
    check_decode(decode, device)
    check_positive_int("batch_size", batch_size)
    check_int("num_workers", num_workers, low=0)
    source = image_batches(paths, preprocess, device, decode=decode, num_workers=num_workers, batch_size=batch_size)
    was_training = model.training
    model.eval()
    kept: list[int] = []
    outputs: list[torch.Tensor] = []
    bad: list[tuple[int, str]] = []
    try:
        with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
            for indices, batch, errors in source:
                bad.extend(errors)
                if batch is not None:
                    with torch.inference_mode():
                        outputs.append(model(batch).float())
                    kept.extend(indices)
                advance(bar, len(indices) + len(errors))
    finally:
        model.train(was_training)
    if bad:
        listed = "; ".join(msg for _, msg in bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        if not skip_bad:
            raise InputError(
                f"{len(bad)} unreadable image(s): {listed}. Fix or remove them, "
                "or skip them with --skip-bad (skip_bad=True)"
            )
        log.warning("skipped %d unreadable image(s): %s", len(bad), listed)
    if not kept:
        raise InputError("none of the images could be read")
    return [paths[i] for i in kept], torch.cat(outputs).cpu()


def extract_features(
    model: Model,
    inputs: Iterable[str | os.PathLike],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    device: Any = None,
    decode: str = "cpu",
) -> tuple[torch.Tensor, list[Path]]:
    """Pooled features ``[N, C]`` for image files and directories, in a deterministic order.

    Images are prepared with the model's weights' preprocessing (``model.pretrained_cfg``),
    batched by a DataLoader (``num_workers`` processes). A headed :class:`ResNet` gives its
    pooled features, not its logits. Unreadable images raise :class:`InputError` naming every
    one of them, or are skipped (and logged) with ``skip_bad=True``. ``device``: where the
    model computes (default: where it is; ``"auto"``, ``"cpu"``, ``"cuda[:N]"``); on a GPU the
    workers hand over uint8 batches in pinned memory, normalised on the GPU one batch ahead.
    ``decode="gpu"``: the workers only read the files, and each batch of JPEGs is decoded on
    the GPU (:mod:`~resnet_zoo.inference.device_decode`; what it cannot take goes to Pillow).

    Returns:
        ``(features, paths)``: row ``i`` of ``features`` belongs to ``paths[i]``.
    """
    features_model = PooledFeatures(on_device(model, device))
    paths, feats = _run_over_images(
        features_model,
        inputs,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_bad=skip_bad,
        progress=progress,
        desc="features",
        decode=decode,
    )
    return feats, paths


class PooledFeatures(ModelView):
    """A view of a model that returns pooled features (the head is skipped)."""

    def __init__(self, model: Model) -> None:
        if isinstance(unwrap(model), ResNetFeatures):
            raise ConfigError("extract_features gives pooled features: pass a ResNet, not features_only")
        backend, dtype, _ = compute_of(model)
        super().__init__(model, backend=backend, dtype=dtype)
        self.training = model.training  # so that restoring the mode restores the caller's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_pooled(x)


@dataclass(frozen=True)
class Prediction:
    path: Path
    topk: list[tuple[int, str, float]]  # (class index, label, probability)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "topk": [{"class": c, "label": label, "score": s} for c, label, s in self.topk]}


def predict(
    model: Model,
    inputs: Iterable[str | os.PathLike],
    *,
    top: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = False,
    device: Any = None,
    decode: str = "cpu",
) -> list[Prediction]:
    """Top-``top`` classes with softmax probabilities for each image, computed on ``device``
    (default: where the model is), as :func:`extract_features` does."""
    num_classes = model.config.num_classes
    if not num_classes:
        raise ConfigError("this model has no classifier head (num_classes=0): use extract_features")
    if not is_int(top, 1, num_classes):
        raise ConfigError(f"top must be between 1 and the number of classes ({num_classes}), got {top!r}")
    labels = list(model.pretrained_cfg.labels or ()) or None
    if labels is None and num_classes == 1000:
        labels = read_labels("imagenet_classes.txt")  # a 1000-class ResNet is an ImageNet one
        log.info("weights carry no class names: using ImageNet's 1000")
    paths, logits = _run_over_images(
        on_device(model, device),
        inputs,
        batch_size=batch_size,
        num_workers=num_workers,
        skip_bad=skip_bad,
        progress=progress,
        desc="predict",
        decode=decode,
    )
    probs = logits.softmax(dim=1)
    scores, classes = probs.topk(top, dim=1)
    out = []
    for path, row_s, row_c in zip(paths, scores.tolist(), classes.tolist()):
        out.append(Prediction(path, [(c, labels[c] if labels else str(c), s) for c, s in zip(row_c, row_s)]))
    return out
