"""Shortcuts and the two residual blocks of He et al. 2016.

A block computes ``act(F(x) + shortcut(x))``. ``F`` always has more than one layer: with a
single layer the sum would be linear in ``x`` and the block would add no non-linearity.
Module names follow the labml reference (``conv1``/``bn1``/..., ``shortcut.conv``/``shortcut.bn``)
so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SHORTCUTS, ResNetConfig
from .errors import ConfigError
from .util.checks import check_positive_int

__all__ = [
    "ShortcutProjection",
    "ZeroPadShortcut",
    "ResidualBlock",
    "BottleneckResidualBlock",
    "make_shortcut",
    "make_stages",
]


class ShortcutProjection(nn.Module):
    """The projection shortcut ``W_s x``: a conv with the block's stride, then batch norm.

    ``kernel_size=1`` is the paper's option B; the labml reference's CIFAR ResNet-14 uses ``kernel_size=3``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        kernel_size: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        check_positive_int("kernel_size", kernel_size)
        # Same stride as F so that the two maps have the same size.
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias
        )
        # The paper puts batch norm after every convolution.
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``."""
        return self.bn(self.conv(x))


class ZeroPadShortcut(nn.Module):
    """The paper's option A: a strided identity whose extra channels are zeros (no parameters).

    The zeros are split evenly before and after the input channels, the layout of the widely
    used CIFAR ResNet checkpoints, so that their weights keep working.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        if out_channels < in_channels:
            raise ConfigError(
                f"ZeroPadShortcut cannot reduce channels ({in_channels} -> {out_channels}); use ShortcutProjection"
            )
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, *, bias: bool) -> nn.Module:
    """Identity where the shape is unchanged, otherwise the shortcut ``kind`` (see SHORTCUTS)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "projection":
        return ShortcutProjection(in_channels, out_channels, stride, bias=bias)
    if kind == "conv3x3":
        return ShortcutProjection(in_channels, out_channels, stride, kernel_size=3, bias=bias)
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    raise ConfigError(f"shortcut must be one of {list(SHORTCUTS)}, got {kind!r}")


class ResidualBlock(nn.Module):
    """Basic block: two 3x3 convs, each followed by batch norm, ReLU after the first and after the sum.

    The stride sits in the first conv, which also maps ``in_channels`` to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        bias: bool = True,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, bias=bias)
        # ReLU after adding the shortcut.
        self.act2 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the branch's last BN scale so the block starts as (a projection of) identity."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)  # in place: out is this block's own fresh tensor
        return self.act2(out)


class BottleneckResidualBlock(nn.Module):
    """Bottleneck block: 1x1 down to ``bottleneck_channels``, 3x3, 1x1 up to ``out_channels``.

    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"; the original paper strided
    the first 1x1, which throws away 3/4 of the input before looking at it). ``groups > 1``
    makes the 3x3 a grouped conv (ResNeXt).
    """

    def __init__(
        self,
        in_channels: int,
        bottleneck_channels: int,
        out_channels: int,
        stride: int,
        *,
        groups: int = 1,
        bias: bool = True,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("bottleneck_channels", bottleneck_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("stride", stride)
        check_positive_int("groups", groups)
        if bottleneck_channels % groups:
            raise ConfigError(f"bottleneck_channels={bottleneck_channels} is not divisible by groups={groups}")
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, 1, stride=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(bottleneck_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bottleneck_channels,
            bottleneck_channels,
            3,
            stride=stride,
            padding=1,
            groups=groups,
            bias=bias,
        )
        self.bn2 = nn.BatchNorm2d(bottleneck_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(bottleneck_channels, out_channels, 1, stride=1, bias=bias)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, bias=bias)
        self.act3 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the branch's last BN scale so the block starts as (a projection of) identity."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)  # in place: out is this block's own fresh tensor
        return self.act3(out)


def checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` with its activations recomputed in the backward pass (non-reentrant
    ``torch.utils.checkpoint``). The recomputation would update batch-norm running statistics a
    second time; they are put back, so training matches an unchecked run exactly."""
    from torch.utils.checkpoint import checkpoint

    calls = 0

    def run(inp: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1 or not block.training:
            return block(inp)
        saved = [
            (b, b.clone())
            for m in block.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)
            if b is not None
        ]
        try:
            return block(inp)
        finally:
            with torch.no_grad():
                for buf, value in saved:
                    buf.copy_(value)

    return checkpoint(run, x, use_reentrant=False)


def make_stages(config: ResNetConfig, in_channels: int) -> tuple[list[nn.Module], list[int]]:
    """Every block of every stage, in order, and the index of each stage's last block. Only the
    first block of a stage changes the map size (``config.strides``) and the channels."""
    blocks: list[nn.Module] = []
    stage_ends: list[int] = []
    prev = in_channels
    for i, (n, channels) in enumerate(zip(config.n_blocks, config.n_channels)):
        for j in range(n):
            stride = config.strides[i] if j == 0 else 1
            if config.bottlenecks is None:
                block: nn.Module = ResidualBlock(
                    prev, channels, stride, bias=config.conv_bias, shortcut=config.shortcut
                )
            else:
                block = BottleneckResidualBlock(
                    prev,
                    config.bottlenecks[i],
                    channels,
                    stride,
                    groups=config.groups,
                    bias=config.conv_bias,
                    shortcut=config.shortcut,
                )
            blocks.append(block)
            prev = channels
        stage_ends.append(len(blocks) - 1)
    return blocks, stage_ends
