"""onnxruntime and OpenVINO as backends of :func:`~resnet_zoo.optimize_for_inference`.

The model is exported to ONNX by :func:`resnet_zoo.inference.export.export_model` (logits and pooled
features as two outputs, dynamic batch), run by the runtime, and wrapped so that it takes the
same float32 NCHW tensor and returns the same float32 tensor as the torch path. Every backend is
checked against the eager model when it is built: float32 relative error <= 1e-4, bfloat16
cosine >= 0.999, int8 cosine >= 0.98 (int8 accuracy is measured on real data by
``scripts/eval_cifar10.py``).

``backend="auto"``, the choice among these and the torch path, is :mod:`.auto`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, cast

import torch
from torch import nn

from .. import cpu
from ..errors import ConfigError, ResNetZooError
from ..model import ResNet, ResNetBase, ResNetFeatures
from .export import export_model
from .images import Preprocess, find_images
from .model_view import ModelView

__all__ = [
    "RUNTIMES",
    "RuntimeModel",
    "build_runtime",
    "check_parity",
    "images_to_tensor",
    "input_size",
    "export_onnx",
    "quantize_int8",
]

log = logging.getLogger(__name__)

RUNTIMES = ("onnxruntime", "openvino")
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}  # backend -> the package it needs
CACHE_ENV = "RESNET_ZOO_CACHE"
# Parity when a backend is built: float32 relative error, bf16 / int8 cosine similarity.
FP32_TOL = 1e-4
COSINE_MIN = {torch.bfloat16: 0.999, "int8": 0.98}


def _require(backend: str) -> None:
    if backend not in RUNTIMES:
        raise ConfigError(
            f"build_runtime builds one of {list(RUNTIMES)}, got {backend!r}; "
            "the torch path is optimize_for_inference(backend='torch')"
        )
    if importlib.util.find_spec(RUNTIME_MODULES[backend]) is None:
        raise ConfigError(
            f"backend {backend!r} needs the {RUNTIME_MODULES[backend]} package: pip install 'resnet_zoo[runtimes]'"
        )


class _ExportView(nn.Module):
    """What is exported: ``(logits, features)`` for a model with a head, ``features`` without."""

    def __init__(self, model: ResNetBase) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        self.has_head = isinstance(model, ResNet) and model.num_classes > 0
        self.head = model.fc if isinstance(model, ResNet) else nn.Identity()

    def forward(self, x: torch.Tensor) -> Any:
        if self.has_head:
            feats = self.model.forward_pooled(x)
            return self.head(feats), feats
        return self.model(x)


def export_onnx(model: ResNetBase, directory: Path, input_size: int) -> tuple[Path, list[str]]:
    """The model (in eval mode: pass a copy if it must stay in training mode) as ONNX in
    ``directory``; returns the file and its output names."""

    view = _ExportView(model)
    names = ["logits", "features"] if view.has_head else ["features"]
    path = export_model(view, directory / "model.onnx", format="onnx", input_size=input_size, output_names=names)
    return path, names


def copy_eval(model: ResNetBase) -> ResNetBase:
    import copy

    return copy.deepcopy(model).float().eval()


def ort_cuda_available() -> bool:
    """onnxruntime is installed with its CUDA execution provider."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class _Ort:
    providers = ["CPUExecutionProvider"]

    def __init__(self, path: Path, names: list[str], dtype: Any) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=self.providers)
        self.names = names

    def __call__(self, x: torch.Tensor, output: str) -> torch.Tensor:
        (out,) = self.session.run([output], {"images": x.numpy()})
        return torch.from_numpy(out)


class _OpenVino:
    def __init__(self, path: Path, names: list[str], dtype: Any) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        precision = "bf16" if dtype == torch.bfloat16 else "f32"
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": precision,
        }
        self.names = names
        self.compiled: dict[tuple[tuple[int, ...], str], Any] = {}

    def _request(self, shape: tuple[int, ...], output: str) -> Any:
        # One compiled model per batch size and output: a static shape lets OpenVINO plan faster
        # kernels, and a graph with only the output asked for runs ~10% faster in bf16 than one
        # that must also keep the other (measured on CIFAR ResNet-56, batch 256).
        key = (shape, output)
        if key not in self.compiled:
            import openvino as ov

            full = self.model.clone()
            full.reshape({full.inputs[0]: list(shape)})
            model = ov.Model([full.outputs[self.names.index(output)]], full.get_parameters())
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.compiled[key] = (compiled, compiled.create_infer_request())
        return self.compiled[key]

    def __call__(self, x: torch.Tensor, output: str) -> torch.Tensor:
        compiled, request = self._request(tuple(x.shape), output)
        request.infer({0: x.numpy()})
        out = request.get_tensor(compiled.outputs[0]).data
        return torch.from_numpy(out.copy())


class _OrtCuda(_Ort):
    """onnxruntime's CUDA execution provider (host arrays in and out, as its users run it)."""

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]


_RUNNERS: dict[str, Callable[..., Any]] = {"onnxruntime": _Ort, "openvino": _OpenVino, "onnxruntime-cuda": _OrtCuda}


class RuntimeModel(ModelView):
    """A model run by onnxruntime or OpenVINO: float32 NCHW in, float32 out (logits, or pooled
    features for a model without a head); ``forward_pooled`` gives the pooled features.

    The exported graph ends at the pooled features, so there is no unpooled map
    (``forward_features``) to give: that needs the torch backend."""

    def __init__(self, model: ResNetBase, backend: str, dtype: Any, runner: Any, onnx_path: Path | None) -> None:
        # Not a submodule: the runtime holds the weights; the eager model gives the metadata
        # and the input checks (and keeps the repr short).
        super().__init__(model, backend=backend, dtype=dtype, submodule=False)
        self.model: ResNetBase = model
        self.onnx_path = onnx_path
        self._runner = runner
        self._has_head = "logits" in runner.names

    def train(self, mode: bool = True) -> RuntimeModel:
        if mode:
            raise ConfigError(f"a model run by {self.backend} is for inference only; train the eager model")
        return super().train(False)

    def _run(self, x: torch.Tensor, output: str) -> torch.Tensor:
        self.model._check_input(x)
        if x.shape[0] == 0:
            width = self.model.config.num_classes if output == "logits" else self.model.num_features
            return torch.empty(0, width)
        return self._runner(x.detach().float().contiguous().cpu(), output).to(x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` float32 -> float32 logits (pooled features without a head)."""
        return self._run(x, "logits" if self._has_head else "features")

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, n_channels[-1]]`` (float32), the head skipped."""
        return self._run(x, "features")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            f"the {self.backend} export ends at the pooled features: use "
            "forward_pooled, or optimize_for_inference(backend='torch') for the map"
        )

    def extra_repr(self) -> str:
        return f"backend={self.backend}, dtype={self.dtype}"


def input_size(model: ResNetBase) -> int:
    """The side of the square images ``model``'s weights are fed."""
    return model.pretrained_cfg.preprocessing.input_size


def build_runtime(
    model: ResNetBase,
    backend: str,
    dtype: Any = torch.float32,
    *,
    calibration: torch.Tensor | None = None,
    workdir: str | os.PathLike | None = None,
    check: bool = True,
    device: torch.device | None = None,
) -> RuntimeModel:
    """``model`` exported to ONNX and run by ``backend`` ("onnxruntime" or "openvino") in
    ``dtype`` (float32; bfloat16 on OpenVINO; "int8": static post-training quantization
    calibrated on ``calibration`` images, a float32 ``[N, C, H, W]`` tensor, N <= 512).
    ``device`` a GPU: onnxruntime's CUDA execution provider, float32 (outputs on the input's
    device)."""
    _require(backend)
    cuda = device is not None and device.type == "cuda"
    if cuda and (backend != "onnxruntime" or dtype != torch.float32 or not ort_cuda_available()):
        raise ConfigError(
            f"on {device} the runtime backend is onnxruntime's CUDA provider in float32 "
            "(pip install onnxruntime-gpu); OpenVINO, bfloat16 and int8 run on the CPU"
        )
    if isinstance(model, ResNetFeatures):
        raise ConfigError(
            f"backend {backend!r} runs pooled features and logits; per-stage feature "
            "maps (features_only) run on backend='torch'"
        )
    if dtype == torch.bfloat16 and backend == "onnxruntime":
        raise ConfigError(
            "onnxruntime has no fast bfloat16 path on CPUs; use backend='openvino' "
            "or 'torch' for bfloat16, or dtype=torch.float32"
        )
    if dtype == "int8" and calibration is None:
        raise ConfigError(
            "dtype='int8' needs calibration images: a float32 [N, C, H, W] tensor of "
            "up to 512 preprocessed training images"
        )
    size = input_size(model)
    eager = copy_eval(model)  # one private copy: exported, then kept for metadata and input checks
    # The runtimes read the ONNX file into memory: without a workdir it lives only until then.
    with tempfile.TemporaryDirectory(prefix="resnet_zoo-onnx-") as scratch:
        path, names = export_onnx(eager, Path(workdir) if workdir is not None else Path(scratch), size)
        if dtype == "int8":
            path = quantize_int8(path, cast(torch.Tensor, calibration))  # int8 without it was refused above
        runner = _RUNNERS["onnxruntime-cuda" if cuda else backend](path, names, dtype)
    runtime = RuntimeModel(eager, backend, dtype, runner, path if workdir is not None else None).eval()
    if check:
        check_parity(model, runtime, dtype, size)
    return runtime


def check_parity(model: ResNetBase, fast: nn.Module, dtype: Any, input_size: int) -> float:
    """Compare ``fast`` with the eager ``model`` on a fixed random batch; raise if they differ
    beyond the dtype's tolerance. Returns the relative error (float32) or the cosine."""
    channels = model.config.img_channels
    x = torch.randn(4, channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    was = model.training
    model.eval()
    with torch.inference_mode():
        ref = model(x).float()
        out = fast(x).float()
    model.train(was)
    if dtype == torch.float32:
        err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        if not err <= FP32_TOL:
            raise ResNetZooError(
                f"{getattr(fast, 'backend', 'torch')} float32 output differs from the "
                f"eager model: relative error {err:.2e} > {FP32_TOL:.0e}"
            )
        return err
    cos = float(torch.nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1)).min())
    if not cos >= COSINE_MIN[dtype]:
        raise ResNetZooError(
            f"{getattr(fast, 'backend', 'torch')} {dtype} output differs from the "
            f"eager model: cosine {cos:.5f} < {COSINE_MIN[dtype]}"
        )
    return cos


def quantize_int8(path: Path, calibration: torch.Tensor) -> Path:
    """Static post-training quantization with onnxruntime (QDQ, per-channel int8 weights, uint8
    activations, min-max ranges from ``calibration``); onnxruntime and OpenVINO both run it."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not isinstance(calibration, torch.Tensor) or calibration.ndim != 4 or not 1 <= len(calibration) <= 512:
        raise ConfigError(
            "calibration must be a float32 [N, C, H, W] tensor with 1 <= N <= 512, got "
            + (
                f"shape {list(calibration.shape)}"
                if isinstance(calibration, torch.Tensor)
                else type(calibration).__name__
            )
        )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.float().split(32))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.contiguous().numpy()}

    prepared = path.with_name("model.pre.onnx")
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    out = path.with_name("model.int8.onnx")
    caps = cpu.cpu_capabilities()
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        # Without VNNI/AMX, u8*s8 products can saturate int16 accumulators: 7-bit weights.
        reduce_range=not caps.fast_int8,
    )
    return out


# --- Choosing the fastest backend -------------------------------------------------------------


def images_to_tensor(images: Iterable[Any] | torch.Tensor, model: ResNetBase, limit: int = 512) -> torch.Tensor:
    """Calibration images as the model sees them: a tensor as is, or image files preprocessed
    with the model's weights' preprocessing (at most ``limit``)."""
    if isinstance(images, torch.Tensor):
        return images[:limit]

    prep = Preprocess(model.pretrained_cfg.preprocessing, channels=model.config.img_channels)
    paths = find_images(images)[:limit]
    return torch.stack([prep(p) for p in paths])
