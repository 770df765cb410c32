"""Export a model to ONNX or TorchScript, and check the result against the eager model."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence, cast

import torch
from torch import nn

from ..config import ResNetConfig
from ..errors import ConfigError, ResNetZooError
from ..util.atomic import atomic_write
from ..util.checks import check_positive_int, is_int

__all__ = ["FORMATS", "export_model"]

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")


def _check_opset(opset: int | None) -> int | None:
    """An opset the installed exporter writes: from torch's dynamo exporter's own (its
    ``TORCHLIB_OPSET``, 18 today; below it, it converts down and may silently keep 18) to the
    newest the installed onnx knows."""
    import onnx

    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as low
    except ImportError:  # a torch that moved it: the floor of torch 2.5 to 2.14
        low = 18
    high = onnx.defs.onnx_opset_version()
    if opset is not None and not is_int(opset, low, high):
        raise ConfigError(
            f"opset must be an integer from {low} to {high} (what this torch and onnx export), got {opset!r}"
        )
    return opset


def export_model(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    format: str = "onnx",
    input_size: int = 224,
    opset: int | None = None,
    output_names: Sequence[str] = ("output",),
    img_channels: int | None = None,
) -> Path:
    """Write ``model`` (eval mode, float32, batch dimension dynamic for ONNX) to ``out``.

    ONNX goes through ``torch.onnx.export(dynamo=True)`` (needs the ``onnx`` and ``onnxscript``
    packages: ``pip install resnet_zoo[export]``); TorchScript through ``torch.jit.trace``.
    """
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {list(FORMATS)}, got {format!r}")
    check_positive_int("input_size", input_size)
    out = Path(out)
    model = model.eval()
    # A resnet_zoo model knows its input channels; any other module (a peer's) is told.
    channels = img_channels if img_channels is not None else cast(ResNetConfig, model.config).img_channels
    example = torch.randn(2, channels, input_size, input_size)
    with atomic_write(out) as tmp:  # a failed export leaves no file under the final name
        if format == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(model, example, check_trace=True)
            traced.save(str(tmp))
        else:
            try:
                import onnx  # noqa: F401
                import onnxscript  # noqa: F401
            except ImportError:
                raise ResNetZooError(
                    "ONNX export needs the onnx and onnxscript packages: pip install 'resnet_zoo[export]'"
                ) from None
            opset = _check_opset(opset)
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                input_names=["images"],
                output_names=list(output_names),
                opset_version=opset,
                verbose=False,
                external_data=False,
            )
            if program is None:
                raise ResNetZooError("torch.onnx.export returned no program: upgrade torch (2.5 or later)")
            program.save(str(tmp))
            written = {o.domain: o.version for o in onnx.load(str(tmp), load_external_data=False).opset_import}
            if opset is not None and written.get("", written.get("ai.onnx")) != opset:
                raise ConfigError(f"the exporter wrote opset {written.get('')} where opset {opset} was asked for")
    log.info("wrote %s (%s)", out, format)
    return out
