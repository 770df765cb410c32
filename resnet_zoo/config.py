"""The frozen config that describes a ResNet completely; stdlib only.

A :class:`ResNetConfig` is data: it round-trips through JSON (``to_dict`` / ``from_dict``),
every field is validated on construction, and overrides go through :meth:`ResNetConfig.replace`
so that a misspelt option fails loudly instead of being swallowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigError, UnknownOptionError
from .util.checks import check_positive_int, is_int, is_number

__all__ = ["ResNetConfig", "SHORTCUTS"]

#: Shortcut kinds used where a block changes shape (identity is used where it does not).
#: "projection": 1x1 conv with the block's stride + BN (paper's option B, the labml reference's W_s x).
#: "conv3x3": 3x3 conv, padding 1, with the block's stride + BN (the labml reference's CIFAR ResNet-14).
#: "zero_pad": strided identity with the new channels zero-filled, no parameters (paper's option A).
SHORTCUTS = ("projection", "conv3x3", "zero_pad")

#: timm's global pooling kinds (resnet_zoo.layers computes them).
POOL_TYPES = ("avg", "max", "avgmax", "catavgmax", "")


# Bounds that no real ResNet reaches but that keep a hostile config.json from allocating for
# minutes: ResNet-1202 has 600 blocks; hyperspectral inputs have a few hundred channels.
MAX_IMG_CHANNELS = 4096
MAX_BLOCKS = 2000  # in the whole network
MAX_WIDTH = 1 << 16  # channels of a stage, or of its bottleneck


def _int_tuple(field: str, value: Any, *, allow_empty: bool = False) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{field} must be a list of positive integers, got {value!r}")
    items = tuple(value)
    if not items and not allow_empty:
        raise ConfigError(f"{field} must not be empty: give one entry per stage")
    for i, item in enumerate(items):
        check_positive_int(f"{field}[{i}]", item)
    return items


def _check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{field} must be True or False, got {value!r}")


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to build a ResNet; one entry per stage in the tuple fields.

    The defaults are the labml reference's bare ``ResNetBase``: conv biases, no stem ReLU or max-pool,
    projection shortcuts, and the map halved at the first block of every stage after the first.
    """

    # Blocks per stage (one stage per feature-map size).
    n_blocks: tuple[int, ...]
    # Output channels of each stage.
    n_channels: tuple[int, ...]
    # Width of each stage's bottleneck 3x3 conv; None selects basic (two 3x3 conv) blocks.
    bottlenecks: tuple[int, ...] | None = None
    # Channels of the input image.
    img_channels: int = 3
    # Kernel of the stem conv; its padding is first_kernel_size // 2, as in the labml reference.
    first_kernel_size: int = 7
    # Stride of each stage's first block; None = (1, 2, 2, ...), the labml reference's description.
    # (2, 1, 1, ...) reproduces the labml reference code, which halves the map only once.
    stage_strides: tuple[int, ...] | None = None
    # Channels out of the stem; None = n_channels[0] as in the labml reference (torchvision: 64).
    stem_channels: int | None = None
    # Stride of the stem conv: 2 in the labml reference and on ImageNet, 1 for 32x32 CIFAR inputs.
    stem_stride: int = 2
    # ReLU after the stem's batch norm (the labml reference has none; torchvision and the paper do).
    stem_act: bool = False
    # 3x3 stride-2 max-pool after the stem (torchvision's ImageNet layout).
    stem_pool: bool = False
    # Bias on every conv: True in the labml reference; False where a batch norm follows (torchvision).
    conv_bias: bool = True
    # Groups of the bottleneck 3x3 conv (ResNeXt cardinality); 1 for plain ResNets.
    groups: int = 1
    # Shortcut where a block changes shape; one of SHORTCUTS.
    shortcut: str = "projection"
    # Classes of the linear head of ResNet; 0 means no head (the labml reference's ResNetBase).
    num_classes: int = 0
    # Start each residual branch's last batch norm at zero, so every block starts as identity
    # (Goyal et al. 2017); an initialisation choice, not a change of architecture.
    zero_init_residual: bool = False
    # torchvision's replace_stride_with_dilation: one bool per stage after the first. Where True,
    # that stage keeps the map size (stride 1) and dilates its 3x3 convs by the stride instead
    # (DeepLabV3 and FCN build their backbones with [False, True, True]). None: no dilation.
    replace_stride_with_dilation: tuple[bool, ...] | None = None
    # timm's head options: the global pooling (one of POOL_TYPES: "avg", "max", "avgmax",
    # "catavgmax" with twice the features, "" for the unpooled map), the dropout before the
    # classifier, and stochastic depth, rising linearly over the blocks from 0 to drop_path_rate.
    global_pool: str = "avg"
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise lists from JSON to tuples in place
        set_(self, "n_blocks", _int_tuple("n_blocks", self.n_blocks))
        set_(self, "n_channels", _int_tuple("n_channels", self.n_channels))
        n_stages = len(self.n_channels)
        if len(self.n_blocks) != n_stages:
            raise ConfigError(
                f"n_blocks has {len(self.n_blocks)} entries but n_channels has {n_stages}: "
                "give one entry per stage in both"
            )
        for name in ("bottlenecks", "stage_strides"):
            value = getattr(self, name)
            if value is None:
                continue
            value = _int_tuple(name, value)
            if len(value) != n_stages:
                raise ConfigError(
                    f"{name} has {len(value)} entries but there are {n_stages} stages "
                    f"(n_channels={list(self.n_channels)}): give one per stage, or None"
                )
            set_(self, name, value)
        self._check_size()
        self._check_dilation(n_stages)
        check_positive_int("img_channels", self.img_channels)
        if self.img_channels > MAX_IMG_CHANNELS:
            raise ConfigError(
                f"img_channels={self.img_channels} is more than {MAX_IMG_CHANNELS}: "
                "images have 1 (grey), 3 (RGB) or a few more channels"
            )
        check_positive_int("first_kernel_size", self.first_kernel_size)
        if self.stem_channels is not None:
            check_positive_int("stem_channels", self.stem_channels)
        check_positive_int("stem_stride", self.stem_stride)
        check_positive_int("groups", self.groups)
        for name in ("stem_act", "stem_pool", "conv_bias", "zero_init_residual"):
            _check_bool(name, getattr(self, name))
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut must be one of {list(SHORTCUTS)}, got {self.shortcut!r}")
        if not is_int(self.num_classes, 0):
            raise ConfigError(f"num_classes must be an integer >= 0 (0 means no head), got {self.num_classes!r}")
        self._check_groups()
        self._check_head()
        if self.shortcut == "zero_pad":
            prev = self.stem_out_channels
            for i, channels in enumerate(self.n_channels):
                if channels < prev:
                    raise ConfigError(
                        f"shortcut='zero_pad' cannot reduce channels ({prev} -> n_channels[{i}]="
                        f"{channels}); use shortcut='projection'"
                    )
                prev = channels

    @property
    def n_stages(self) -> int:
        return len(self.n_channels)

    @property
    def stem_out_channels(self) -> int:
        return self.n_channels[0] if self.stem_channels is None else self.stem_channels

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each stage's first block, with the default filled in."""
        if self.stage_strides is not None:
            return self.stage_strides
        return (1,) + (2,) * (self.n_stages - 1)

    @property
    def num_features(self) -> int:
        """Width of the pooled feature vector."""
        return self.n_channels[-1]

    def _check_head(self) -> None:
        if self.global_pool not in POOL_TYPES:
            raise ConfigError(f"global_pool must be one of {list(POOL_TYPES)}, got {self.global_pool!r}")
        if self.global_pool == "" and self.num_classes:
            raise ConfigError(
                f"global_pool='' (no pooling) leaves a map, which a linear head of num_classes={self.num_classes} "
                "cannot take: set num_classes=0 with it, or choose a pooling"
            )
        for name in ("drop_rate", "drop_path_rate"):
            value = getattr(self, name)
            if not is_number(value) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} is a probability: a number from 0 up to (not including) 1, got {value!r}")

    @property
    def head_features(self) -> int:
        """Width of the vector the head takes: the last stage's channels, twice that for
        "catavgmax" pooling (timm's ``head_hidden_size``)."""
        return self.num_features * (2 if self.global_pool == "catavgmax" else 1)

    def _check_groups(self) -> None:
        if self.groups == 1:
            return
        if self.bottlenecks is None:
            raise ConfigError(
                f"groups={self.groups} needs bottleneck blocks (grouped 3x3 conv, ResNeXt): "
                "set bottlenecks, or groups=1 for basic blocks"
            )
        for i, width in enumerate(self.bottlenecks):
            if width % self.groups:
                raise ConfigError(
                    f"bottlenecks[{i}]={width} is not divisible by groups={self.groups}: "
                    "each group of the 3x3 conv needs a whole number of channels"
                )

    def _check_dilation(self, n_stages: int) -> None:
        value = self.replace_stride_with_dilation
        if value is None:
            return
        if (
            isinstance(value, (str, bytes))
            or not isinstance(value, Sequence)
            or len(value) != n_stages - 1
            or not all(isinstance(v, bool) for v in value)
        ):
            raise ConfigError(
                f"replace_stride_with_dilation must be {n_stages - 1} True/False values, one per stage "
                f"after the first (torchvision's [False, True, True] for 4 stages), got {value!r}"
            )
        object.__setattr__(self, "replace_stride_with_dilation", tuple(value))

    def stage_layout(self) -> tuple[tuple[int, int, int], ...]:
        """Per stage: (stride of its first block, dilation of its first block, dilation of the
        others). torchvision's rule (``ResNet._make_layer``): a stage whose stride is replaced
        by dilation multiplies the dilation by that stride; its first block still uses the
        dilation before it."""
        out = []
        dilation = 1
        for i, stride in enumerate(self.strides):
            previous = dilation
            if i > 0 and self.replace_stride_with_dilation and self.replace_stride_with_dilation[i - 1]:
                dilation *= stride
                stride = 1
            out.append((stride, previous, dilation))
        return tuple(out)

    def _check_size(self) -> None:
        """Refuse a network that no ResNet is, before anything allocates for it."""
        if sum(self.n_blocks) > MAX_BLOCKS:
            raise ConfigError(
                f"n_blocks={list(self.n_blocks)} asks for {sum(self.n_blocks):,} blocks, more than {MAX_BLOCKS:,}: "
                "the deepest ResNet (1202 layers) has 600"
            )
        widths = [*self.n_channels, *(self.bottlenecks or ())]
        if max(widths) > MAX_WIDTH:
            raise ConfigError(
                f"a stage {max(widths):,} channels wide is more than {MAX_WIDTH:,}: "
                "n_channels and bottlenecks are widths of convolutions (ResNets use 16 to 2048)"
            )

    @classmethod
    def check_names(cls, names: Iterable[str]) -> None:
        """The one name check (``replace`` and ``from_dict``): :class:`ConfigError` for the first
        name that is not a field, with the closest fields and every valid one."""
        valid = [f.name for f in fields(cls)]
        for key in names:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=3)
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise UnknownOptionError(f"{key!r} is not a ResNetConfig field.{hint} Valid fields: {', '.join(valid)}")

    def replace(self, **changes: Any) -> ResNetConfig:
        """A copy with ``changes`` applied; an unknown field name raises :class:`ConfigError`."""
        self.check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a ResNetConfig is read from a JSON object, got {type(data).__name__}")
        cls.check_names(sorted(data))
        missing = [k for k in ("n_blocks", "n_channels") if k not in data]
        if missing:
            raise ConfigError(f"a ResNetConfig needs {missing}; got keys {sorted(data)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ResNetConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(data)
