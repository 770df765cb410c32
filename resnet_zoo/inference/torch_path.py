"""The torch fast path: batch norm folded into the conv before it (torch's own
``fuse_conv_bn_eval``), activations channels-last, optionally bfloat16 compute.

For bfloat16 the convolutions run on oneDNN ("mkldnn") tensors with weights reordered once at
build time: on CPUs with AMX that is ~1.5x faster than bfloat16 channels-last eager, whose convs
reorder their weights on every call.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any, Callable, cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import ConfigError
from ..model import ResNetBase, ResNetFeatures, ShortcutProjection, ZeroPadShortcut
from .model_view import ModelView

__all__ = [
    "fold_batch_norm",
    "InferenceModel",
    "torch_fast_path",
    "cuda_fast_path",
    "gpu_dtype",
    "GPU_DTYPES",
    "bucket_of",
]


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

    fold(model, "conv1", "bn1")
    for block in _blocks(model):
        for i in (1, 2, 3):
            if hasattr(block, f"conv{i}"):
                fold(block, f"conv{i}", f"bn{i}")
        if isinstance(block.downsample, ShortcutProjection):
            fold(block.downsample, "0", "1")  # torchvision's downsample: conv, then batch norm
    return model


def _blocks(model: ResNetBase) -> list[nn.Module]:
    return [block for stage in model.stages() for block in stage]


class InferenceModel(ModelView):
    """A folded, eval-only ResNet: float32 NCHW in, float32 out, computed in ``dtype``.

    Outputs are inference tensors (made under ``torch.inference_mode``): they cannot enter
    autograd. Build it with :func:`optimize_for_inference`.
    """

    if TYPE_CHECKING:
        model: ResNetBase  # the folded copy (declared for the type checker)

    def __init__(self, model: ResNetBase, *, dtype: torch.dtype, channels_last: bool, use_mkldnn: bool) -> None:
        super().__init__(model, backend="torch", dtype=dtype)
        self.channels_last = channels_last
        self.use_mkldnn = use_mkldnn
        self.compiled_backend: str | None = None  # torch.compile's backend, once compile_buckets() ran
        self.max_batch = 0
        self.__dict__["_compiled"] = {}  # method name -> compiled callable (not submodules)

    def compile_buckets(self, max_batch: int, backend: str = "inductor") -> InferenceModel:
        """Run through ``torch.compile`` without dynamic shapes. A batch of n images is padded
        (with zeros: batch norm is folded, rows do not interact) to the smallest power of two
        >= n, at most ``max_batch``, and larger batches run in chunks of ``max_batch``: a run
        compiles once per bucket and never again, whatever the size of its last batch."""
        if self.use_mkldnn:
            raise ConfigError("the oneDNN bfloat16 path does not compile; build it with compile=True from the start")
        self.compiled_backend, self.max_batch = backend, max_batch
        self.__dict__["_compiled"] = {}
        return self

    def _run(self, name: str, x: torch.Tensor) -> Any:
        """``self.model``'s ``name`` (``forward``, ``forward_pooled``, ``forward_features``) of a
        prepared batch, through the compiled buckets where :meth:`compile_buckets` set them."""
        target = self.model if name == "forward" else getattr(self.model, name)
        if self.compiled_backend is None:
            return target(x)
        compiled: dict[str, Callable] = self.__dict__["_compiled"]
        fn = compiled.get(name)
        if fn is None:
            fn = compiled[name] = torch.compile(cast(Callable, target), dynamic=False, backend=self.compiled_backend)
        outs: list[Any] = []
        for chunk in x.split(self.max_batch):
            n = chunk.shape[0]
            size = bucket_of(n, self.max_batch)
            if size > n:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
                if self.channels_last:
                    chunk = chunk.contiguous(memory_format=torch.channels_last)
            y = fn(chunk)
            outs.append([t[:n] for t in y] if isinstance(y, list) else y[:n])
        if isinstance(outs[0], list):
            return [torch.cat(ts) for ts in zip(*outs)]
        return torch.cat(outs)

    def train(self, mode: bool = True) -> InferenceModel:
        if mode:
            raise ConfigError("an InferenceModel is for inference only; train the eager model")
        return super().train(False)

    def _map_mkldnn(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        y = m.forward_stem(x.contiguous().to_mkldnn(self.dtype))
        for stage in m.stages():
            y = stage(y)
        return y.to_dense().float()

    def _pooled_mkldnn(self, x: torch.Tensor) -> torch.Tensor:
        return self._map_mkldnn(x).mean(dim=(2, 3))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(device=self.device, dtype=self.dtype, memory_format=fmt, non_blocking=True)

    def forward(self, x: torch.Tensor) -> Any:
        """``[B, C, H, W]`` float32 -> float32 logits / features (a list for feature models),
        on the input's device (the model computes on its own)."""
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                pooled = self._pooled_mkldnn(x)
                head = getattr(self.model, "fc", None)
                return pooled if head is None else head(pooled)
            out = self._run("forward", self._prepare(x))
            if isinstance(out, list):
                return [t.to(x.device, torch.float32).contiguous() for t in out]
            return out.to(x.device, torch.float32)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last map ``[B, n_channels[-1], h, w]`` (float32), as the eager model's."""
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                return self._map_mkldnn(x)
            return self._run("forward_features", self._prepare(x)).to(x.device, torch.float32).contiguous()

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, n_channels[-1]]`` (float32), the head skipped."""
        if isinstance(self.model, ResNetFeatures):
            raise ConfigError("a features_only model has no pooled features; call it for its maps")
        self.model._check_input(x)
        with torch.inference_mode():
            if self.use_mkldnn:
                return self._pooled_mkldnn(x)
            return self._run("forward_pooled", self._prepare(x)).to(x.device, torch.float32)

    def extra_repr(self) -> str:
        path = "oneDNN" if self.use_mkldnn else ("channels_last" if self.channels_last else "NCHW")
        return f"dtype={self.dtype}, path={path}"

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles in this wrapper's place: the same folded model,
        casts and layout, as a plain module (timm's hook for models that script otherwise)."""
        if self.use_mkldnn:
            raise ConfigError(
                "the oneDNN bfloat16 path does not script (its convolutions are ScriptModules of "
                "their own); script an optimize_for_inference(..., dtype=torch.float32) model"
            )
        cls = _ScriptedMaps if isinstance(self.model, ResNetFeatures) else _Scripted
        return cls(self.model, self.dtype, self.channels_last)


class _Scripted(nn.Module):
    """A scriptable twin of :class:`InferenceModel`: float32 NCHW in, float32 out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.model, self.dtype, self.channels_last = model, dtype, channels_last

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(dtype=self.dtype, memory_format=fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._prepare(x)).float()


class _ScriptedMaps(_Scripted):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [t.float().contiguous() for t in self.model(self._prepare(x))]


def bucket_of(n: int, max_batch: int) -> int:
    """The compiled batch size that runs ``n`` images: the smallest power of two >= n, or
    ``max_batch`` where that is smaller."""
    return min(max_batch, 1 << max(0, n - 1).bit_length())


def torch_fast_path(
    model: ResNetBase, dtype: torch.dtype, channels_last: bool = True, device: torch.device | None = None,
    allow_mkldnn: bool = True,
) -> InferenceModel:  # fmt: skip
    """An eval-mode copy of ``model`` on ``device`` (default: the model's): batch norm folded,
    channels-last, computing in ``dtype`` (bfloat16 on oneDNN tensors where the CPU runs them)."""
    device = device if device is not None else next(model.parameters()).device
    fast = fold_batch_norm(copy.deepcopy(model).eval()).to(device)
    for p in fast.parameters():
        p.requires_grad_(False)
    has_zero_pad = any(isinstance(b.downsample, ZeroPadShortcut) for b in _blocks(fast))
    use_mkldnn = (
        allow_mkldnn
        and dtype == torch.bfloat16
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


# A GPU computes in float32, or in a 16-bit dtype: bfloat16 from compute capability 8.0,
# float16 on every GPU (below 8.0 the only fast one).
GPU_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def gpu_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """``dtype`` for the GPU ``device``: ``"auto"`` is its 16-bit dtype; bfloat16 on a GPU below
    compute capability 8.0, and int8, are one-line errors saying what to use."""
    from ..device import half_dtype

    if dtype == "auto":
        return half_dtype(device)
    if isinstance(dtype, str):
        if dtype not in GPU_DTYPES:
            raise ConfigError(
                f"dtype {dtype!r} does not run on {device}: expected 'auto' or one of {list(GPU_DTYPES)} "
                "(int8 runs on the CPU runtimes)"
            )
        dtype = GPU_DTYPES[dtype]
    if dtype not in GPU_DTYPES.values():
        raise ConfigError(f"dtype must be 'auto' or one of {list(GPU_DTYPES)} on {device}, got {dtype!r}")
    if dtype == torch.bfloat16 and half_dtype(device) != torch.bfloat16:
        raise ConfigError(
            f"{device} has no bfloat16 tensor cores (compute capability below 8.0): use dtype='float16' or 'auto'"
        )
    return dtype


def cuda_fast_path(model: ResNetBase, dtype: torch.dtype, channels_last: bool, device: torch.device) -> InferenceModel:
    """The GPU fast path: an eval-mode copy on ``device``, batch norm folded, channels-last,
    the whole model cast to ``dtype``; float32 NCHW in, float32 out. Checked against the
    float32 eager model on the same GPU when built (float32: relative error <= 1e-3, TF32
    convolutions allowed; 16-bit: cosine >= 0.999)."""
    fast = torch_fast_path(model, dtype, channels_last, device=device)
    check_on_device(model, fast, dtype, device)
    return fast


def check_on_device(model: ResNetBase, fast: InferenceModel, dtype: torch.dtype, device: torch.device) -> float:
    """Compare ``fast`` with a float32 eager copy of ``model`` on ``device`` on a fixed random
    batch; a :class:`ResNetZooError` where they differ beyond the dtype's tolerance."""
    from ..errors import ResNetZooError

    size = model.pretrained_cfg.preprocessing.input_size
    x = torch.randn(4, model.config.img_channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    ref_model = copy.deepcopy(model).eval().to(device=device, dtype=torch.float32)

    def flat(o: Any) -> torch.Tensor:  # logits, pooled features, or a features_only model's maps
        return torch.cat([t.float().flatten(1) for t in o], 1) if isinstance(o, list) else o.float().flatten(1)

    with torch.inference_mode():
        ref, out = flat(ref_model(x)), flat(fast(x))
    if dtype == torch.float32:
        err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        if not err <= 1e-3:
            raise ResNetZooError(f"the fast path on {device} differs from the eager model: relative error {err:.2e}")
        return err
    cos = float(torch.nn.functional.cosine_similarity(out, ref).min())
    if not cos >= 0.999:
        raise ResNetZooError(
            f"the {dtype} fast path on {device} differs from the eager model: cosine {cos:.5f} < 0.999"
        )
    return cos
