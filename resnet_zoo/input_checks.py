"""What a model checks of its input before a forward pass: a float ``[B, C, H, W]`` tensor with
its channels, unless the call is being traced or compiled (then shapes are graphs)."""

from __future__ import annotations

import sys

import torch

from .errors import InputError

__all__ = ["check_image_batch", "is_tracing"]


def is_tracing(x: object) -> bool:
    """Whether ``x`` is being traced rather than run: a checked shape would be a TracerWarning
    (jit.trace, the legacy ONNX export), a crash (an FX proxy) or a guard (dynamo, export)."""
    onnx = sys.modules.get("torch.onnx")  # loaded by an export; never imported here for a forward
    return (
        isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or (onnx is not None and onnx.is_in_onnx_export())
    )


def check_image_batch(x: torch.Tensor, img_channels: int) -> None:
    """:class:`InputError` saying what is wrong with ``x`` as a batch of ``img_channels``-channel
    images, and how to fix it."""
    if is_tracing(x):  # FX, jit.trace, torch.export, ONNX and torch.compile see shapes as graphs
        return
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"expected a 4-d input [batch, {img_channels}, height, width], got shape {list(x.shape)}")
    if x.shape[1] != img_channels:
        raise InputError(
            f"expected {img_channels} input channels, got shape {list(x.shape)}; "
            f"create the model with img_channels={x.shape[1]} or convert the images"
        )
    if not x.is_floating_point():
        raise InputError(
            f"expected a floating-point input, got dtype {x.dtype}; convert with x.float() (and normalise) first"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise InputError(f"input has an empty spatial size {list(x.shape)}: height and width must be >= 1")
