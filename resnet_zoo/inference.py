"""Inference: the folded fast path, batched feature extraction, top-k prediction.

``optimize_for_inference`` folds every batch norm into the conv before it (torch's own
``fuse_conv_bn_eval``), keeps activations channels-last, and optionally computes in bfloat16.
For bfloat16 the convolutions run on oneDNN ("mkldnn") tensors with weights reordered once
at build time: on CPUs with AMX that is ~1.5x faster than bfloat16 channels-last eager, whose
convs reorder their weights on every call.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from . import cpu, runtimes
from .blocks import ShortcutProjection, ZeroPadShortcut
from .util.checks import check_int, check_positive_int, is_int
from .data import ImageFiles, collate_images, find_images
from .errors import ConfigError, InputError
from .manifest import read_labels
from .model import ResNet, ResNetBase, ResNetFeatures
from .util.progress import advance
from .transforms import Preprocess, preprocessing_for
from .model_view import ModelView

__all__ = [
    "fold_batch_norm",
    "InferenceModel",
    "optimize_for_inference",
    "extract_features",
    "predict",
    "Prediction",
]

log = logging.getLogger(__name__)

def fold_batch_norm(model: ResNetBase) -> ResNetBase:
    """Fold every eval-mode batch norm into its conv, in place; the norms become Identity.

    ``conv -> bn`` computes ``gamma * (W x + b - mean) / sqrt(var + eps) + beta``: one conv
    with rescaled weights and a new bias does the same, one pass over the map fewer.
    """
    if model.training:
        raise ConfigError("fold_batch_norm needs an eval-mode model (running statistics): call .eval()")

    def fold(owner: nn.Module, conv_name: str, bn_name: str) -> None:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(owner, bn_name, nn.Identity())

    fold(model, "conv", "bn")
    for block in model.blocks:
        for i in (1, 2, 3):
            if hasattr(block, f"conv{i}"):
                fold(block, f"conv{i}", f"bn{i}")
        if isinstance(block.shortcut, ShortcutProjection):
            fold(block.shortcut, "conv", "bn")
    return model


class InferenceModel(ModelView):
    """A folded, eval-only ResNet: float32 NCHW in, float32 out, computed in ``dtype``.

    Outputs are inference tensors (made under ``torch.inference_mode``): they cannot enter
    autograd. Build it with :func:`optimize_for_inference`.
    """

    def __init__(self, model: ResNetBase, *, dtype: torch.dtype, channels_last: bool,
                 use_mkldnn: bool) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.use_mkldnn = use_mkldnn
        self.backend = "torch"

    def _wrapped(self) -> ResNetBase:
        return self.model

    def train(self, mode: bool = True) -> "InferenceModel":
        if mode:
            raise ConfigError("an InferenceModel is for inference only; train the eager model")
        return super().train(False)

    def _map_mkldnn(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        y = x.contiguous().to_mkldnn(self.dtype)
        return m.blocks(m.pool(m.act(m.conv(y)))).to_dense().float()

    def _pooled_mkldnn(self, x: torch.Tensor) -> torch.Tensor:
        return self._map_mkldnn(x).mean(dim=(2, 3))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(dtype=self.dtype, memory_format=fmt)

    def forward(self, x: torch.Tensor) -> Any:
        """``[B, C, H, W]`` float32 -> float32 logits / features (a list for feature models)."""
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                pooled = self._pooled_mkldnn(x)
                head = getattr(self.model, "fc", None)
                return pooled if head is None else head(pooled)
            out = self.model(self._prepare(x))
            if isinstance(out, list):
                return [t.float().contiguous() for t in out]
            return out.float()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map ``[B, n_channels[-1], h, w]`` (float32), as the eager model's."""
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                return self._map_mkldnn(x)
            return self.model.forward_features(self._prepare(x)).float().contiguous()

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, n_channels[-1]]`` (float32), the head skipped."""
        if isinstance(self.model, ResNetFeatures):
            raise ConfigError("a features_only model has no pooled features; call it for its maps")
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                return self._pooled_mkldnn(x)
            return self.model.forward_pooled(self._prepare(x)).float()

    def extra_repr(self) -> str:
        path = "oneDNN" if self.use_mkldnn else ("channels_last" if self.channels_last else "NCHW")
        return f"dtype={self.dtype}, path={path}"


def optimize_for_inference(
    model: ResNetBase, *, dtype: torch.dtype | str = torch.float32, channels_last: bool = True,
    backend: str = "torch", batch_size: int = 16, calibration: Any = None,
) -> nn.Module:
    """An eval-mode copy of ``model`` for fast CPU inference (the original is untouched).

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
    """
    if not isinstance(model, ResNetBase):
        raise ConfigError(f"optimize_for_inference takes a resnet_zoo model, got {type(model).__name__}")
    if backend not in ("auto", "torch", "onnxruntime", "openvino"):
        raise ConfigError(f"backend must be 'auto', 'torch', 'onnxruntime' or 'openvino', got {backend!r}")
    device = next(model.parameters()).device
    if dtype != "int8":
        dtype = cpu.resolve_dtype(dtype, on_cpu=device.type == "cpu")
    if backend == "torch" and dtype == "int8":
        raise ConfigError("int8 runs on the onnxruntime or openvino backends: pass backend='auto', "
                          "'onnxruntime' or 'openvino'")
    if backend == "torch" or (backend == "auto" and isinstance(model, ResNetFeatures)):
        return _torch_fast(model, dtype, channels_last)

    images = None if calibration is None else runtimes.images_to_tensor(calibration, model)
    if backend != "auto":
        return runtimes.build_runtime(model, backend, dtype, calibration=images)
    check_positive_int("batch_size", batch_size)
    torch_build = None if dtype == "int8" else (lambda: _torch_fast(model, dtype, channels_last))
    candidates = runtimes.candidates_for(model, dtype, None, torch_build, images)
    if not candidates:
        raise ConfigError(f"no installed backend runs {dtype}: pip install 'resnet_zoo[runtimes]'")
    name, fast, speeds = runtimes.choose_backend(model, candidates, batch_size=batch_size, dtype=dtype)
    log.info("backend='auto' chose %s (%s images/s at batch %d)", name,
             ", ".join(f"{k} {v:.1f}" for k, v in speeds.items()), batch_size)
    return fast


def _torch_fast(model: ResNetBase, dtype: torch.dtype, channels_last: bool) -> InferenceModel:
    device = next(model.parameters()).device
    fast = fold_batch_norm(copy.deepcopy(model).eval())
    for p in fast.parameters():
        p.requires_grad_(False)
    has_zero_pad = any(isinstance(b.shortcut, ZeroPadShortcut) for b in fast.blocks)
    use_mkldnn = (
        dtype == torch.bfloat16
        and device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and not isinstance(fast, ResNetFeatures)
        and not has_zero_pad  # strided slicing and padding do not run on oneDNN tensors
    )
    if use_mkldnn:
        from torch.utils import mkldnn as mkldnn_utils

        head = getattr(fast, "fc", None)
        if head is not None:
            fast.fc = nn.Identity()
        with warnings.catch_warnings():  # its modules are ScriptModules, which warn on 2.x
            warnings.simplefilter("ignore", FutureWarning)
            fast = mkldnn_utils.to_mkldnn(fast, dtype)  # reorders conv weights once, here
        if head is not None:
            fast.fc = head  # the head runs on dense float32 features
    else:
        fast = fast.to(dtype=dtype)
        if channels_last:
            fast = fast.to(memory_format=torch.channels_last)
    result = InferenceModel(fast, dtype=dtype, channels_last=channels_last, use_mkldnn=use_mkldnn).eval()
    return result


# --- Features and predictions for image files -------------------------------------------------

def _loader(paths: Sequence[Path], transform: Any, batch_size: int, num_workers: int):
    from torch.utils.data import DataLoader

    check_positive_int("batch_size", batch_size)
    check_int("num_workers", num_workers, low=0)
    return DataLoader(ImageFiles(paths, transform), batch_size=batch_size, shuffle=False,
                      num_workers=num_workers, collate_fn=collate_images)


def _run_over_images(
    model: nn.Module, inputs: Iterable[str | os.PathLike], *, batch_size: int, num_workers: int,
    skip_bad: bool, progress: bool, desc: str,
):
    from tqdm.auto import tqdm

    paths = find_images(inputs)
    config = model.config
    transform = Preprocess(preprocessing_for(model), channels=config.img_channels)
    was_training = model.training
    model.eval()
    kept: list[int] = []
    outputs: list[torch.Tensor] = []
    bad: list[tuple[int, str]] = []
    try:
        with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
            for indices, batch, errors in _loader(paths, transform, batch_size, num_workers):
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
            raise InputError(f"{len(bad)} unreadable image(s): {listed}. Fix or remove them, or skip them")
        log.warning("skipped %d unreadable image(s): %s", len(bad), listed)
    if not kept:
        raise InputError("none of the images could be read")
    return [paths[i] for i in kept], torch.cat(outputs)


def extract_features(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[torch.Tensor, list[Path]]:
    """Pooled features ``[N, C]`` for image files and directories, in a deterministic order.

    Images are prepared with the model's weights' preprocessing (``model.pretrained_cfg``),
    batched by a DataLoader (``num_workers`` processes). A headed :class:`ResNet` gives its
    pooled features, not its logits. Unreadable images raise :class:`InputError` naming every
    one of them, or are skipped (and logged) with ``skip_bad=True``.

    Returns:
        ``(features, paths)``: row ``i`` of ``features`` belongs to ``paths[i]``.
    """
    features_model = PooledFeatures(model)
    paths, feats = _run_over_images(features_model, inputs, batch_size=batch_size,
                                    num_workers=num_workers, skip_bad=skip_bad,
                                    progress=progress, desc="features")
    return feats, paths


class PooledFeatures(ModelView):
    """A view of a model that returns pooled features (the head is skipped)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        if isinstance(model, ResNetFeatures):
            raise ConfigError("extract_features gives pooled features: pass a ResNet, not features_only")
        self.training = model.training  # so that restoring the mode restores the caller's

    def _wrapped(self) -> ResNetBase:
        return self.inner  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.inner
        if isinstance(m, ResNet) or hasattr(m, "forward_pooled"):
            return m.forward_pooled(x)
        return m(x)


@dataclass(frozen=True)
class Prediction:
    path: Path
    topk: list[tuple[int, str, float]]  # (class index, label, probability)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path),
                "topk": [{"class": c, "label": label, "score": s} for c, label, s in self.topk]}


def predict(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    *,
    top: int = 5,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = False,
) -> list[Prediction]:
    """Top-``top`` classes with softmax probabilities for each image."""
    num_classes = model.config.num_classes
    if not num_classes:
        raise ConfigError("this model has no classifier head (num_classes=0): use extract_features")
    if not is_int(top, 1, num_classes):
        raise ConfigError(f"top must be between 1 and the number of classes ({num_classes}), got {top!r}")
    labels = list(model.pretrained_cfg.labels or ()) or None
    if labels is None and num_classes == 1000:
        labels = read_labels("imagenet_classes.txt")  # a 1000-class ResNet is an ImageNet one
        log.info("weights carry no class names: using ImageNet's 1000")
    paths, logits = _run_over_images(model, inputs, batch_size=batch_size, num_workers=num_workers,
                                     skip_bad=skip_bad, progress=progress, desc="predict")
    probs = logits.softmax(dim=1)
    scores, classes = probs.topk(top, dim=1)
    out = []
    for path, row_s, row_c in zip(paths, scores.tolist(), classes.tolist()):
        out.append(Prediction(path, [(c, labels[c] if labels else str(c), s) for c, s in zip(row_c, row_s)]))
    return out
