"""Name -> architecture config: a plain dict behind :func:`register_model`.

Names are data, in the spirit of litgpt's ``name_to_config``: each entry is a frozen
:class:`~resnet_zoo.config.ResNetConfig` plus the input size the network was designed for.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any

from .config import ResNetConfig
from .errors import ConfigError, UnknownModelError
from .manifest import weight_names
from .util.checks import check_positive_int

__all__ = ["ModelEntry", "register_model", "list_models", "get_config", "get_entry", "split_name"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture."""

    name: str
    config: ResNetConfig
    # Side of the square input the network was designed and published for.
    input_size: int
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    config: ResNetConfig,
    *,
    input_size: int = 224,
    description: str = "",
    overwrite: bool = False,
) -> ModelEntry:
    """Register ``name`` for ``config``; an existing name is refused unless ``overwrite=True``."""
    if not isinstance(name, str) or not name or "." in name or name != name.strip():
        raise ConfigError(
            f"model name must be a non-empty string without dots or surrounding spaces "
            f"(dots separate weights tags), got {name!r}"
        )
    if not isinstance(config, ResNetConfig):
        raise ConfigError(f"config must be a ResNetConfig, got {type(config).__name__}")
    check_positive_int("input_size", input_size)
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"model {name!r} is already registered; pass overwrite=True to replace it")
    entry = ModelEntry(name, config, input_size, description)
    _REGISTRY[name] = entry
    return entry


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.tv_in1k" -> ("resnet50", "tv_in1k")``; ``"resnet50" -> ("resnet50", None)``."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}: {name!r}")
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def resolve_name(name: str) -> tuple[ModelEntry, str | None]:
    """``"resnet50.tv_in1k" -> (resnet50's entry, "tv_in1k")``: the one lookup of a name."""
    arch, tag = split_name(name)
    return get_entry(arch), tag


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (a weights tag after a dot is ignored here)."""
    arch, _ = split_name(name)
    try:
        return _REGISTRY[arch]
    except KeyError:
        close = difflib.get_close_matches(arch, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {arch!r}.{hint} See resnet_zoo.list_models() for the {len(_REGISTRY)} registered names."
        ) from None


def get_config(name: str) -> ResNetConfig:
    """The frozen config of a registered name (``"resnet50"`` or ``"resnet50.tag"``)."""
    return get_entry(name).config


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching the fnmatch ``pattern``, in registration order.

    With ``pretrained=True``, the ``arch.tag`` names that have published weights.
    """
    if pretrained:
        names = weight_names()
    else:
        names = list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


# --- The built-in architectures: one line each, with its source -----------------------------

# torchvision's ImageNet layout ("v1.5"): 7x7/2 stem + ReLU + 3x3/2 max-pool, bias-free convs
# (every conv is followed by batch norm, which has its own shift), 1x1 projection shortcuts, the
# stride on the bottleneck's 3x3 conv.
_IMAGENET: dict[str, Any] = dict(
    first_kernel_size=7,
    stem_channels=64,
    stem_stride=2,
    stem_act=True,
    stem_pool=True,
    conv_bias=False,
    shortcut="projection",
    num_classes=1000,
)
_BASIC: dict[str, Any] = dict(_IMAGENET, n_channels=(64, 128, 256, 512))
_BOTTLENECK: dict[str, Any] = dict(_IMAGENET, n_channels=(256, 512, 1024, 2048))
_WIDTHS = (64, 128, 256, 512)  # the bottleneck 3x3 conv's width in each stage, x the wide factor
# The paper's CIFAR networks (section 4.2): 3x3 stem at stride 1 on 32x32 inputs, three stages of
# 16/32/64 channels with n blocks each (6n+2 layers); option A (zero-padding) shortcuts.
_CIFAR: dict[str, Any] = dict(
    n_channels=(16, 32, 64),
    first_kernel_size=3,
    stem_stride=1,
    stem_act=True,
    stem_pool=False,
    conv_bias=False,
    num_classes=10,
)


def _basic(n_blocks: tuple[int, ...]) -> ResNetConfig:
    return ResNetConfig(n_blocks=n_blocks, **_BASIC)


def _bottleneck(n_blocks: tuple[int, ...], width: int = 1, groups: int = 1) -> ResNetConfig:
    return ResNetConfig(n_blocks=n_blocks, bottlenecks=tuple(width * w for w in _WIDTHS), groups=groups, **_BOTTLENECK)


def _cifar(n: int, shortcut: str = "zero_pad") -> ResNetConfig:
    return ResNetConfig(n_blocks=(n, n, n), shortcut=shortcut, **_CIFAR)


_A = "option A (zero-padding) shortcuts"

# One line per architecture: name, config, input size, description (its paper or source).
# fmt: off
_ARCHITECTURES = [
    ("resnet18", _basic((2, 2, 2, 2)), 224, "He et al. 2016, basic blocks, torchvision layout"),
    ("resnet34", _basic((3, 4, 6, 3)), 224, "He et al. 2016, basic blocks, torchvision layout"),
    ("resnet26", _bottleneck((2, 2, 2, 2)), 224, "ResNet-26: bottleneck blocks [2,2,2,2] (the labml reference's second model), torchvision layout"),  # noqa: E501
    ("resnet50", _bottleneck((3, 4, 6, 3)), 224, "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("resnet101", _bottleneck((3, 4, 23, 3)), 224, "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("resnet152", _bottleneck((3, 8, 36, 3)), 224, "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("wide_resnet50_2", _bottleneck((3, 4, 6, 3), width=2), 224, "Zagoruyko & Komodakis 2016: bottleneck width x2"),
    ("wide_resnet101_2", _bottleneck((3, 4, 23, 3), width=2), 224, "Zagoruyko & Komodakis 2016: bottleneck width x2"),
    ("resnext50_32x4d", _bottleneck((3, 4, 6, 3), width=2, groups=32), 224, "Xie et al. 2017: 32 groups of width 4"),
    ("resnext101_32x8d", _bottleneck((3, 4, 23, 3), width=4, groups=32), 224, "Xie et al. 2017: 32 groups of width 8"),
    ("resnext101_64x4d", _bottleneck((3, 4, 23, 3), width=4, groups=64), 224, "Xie et al. 2017: 64 groups of width 4"),
    ("cifar_resnet14", _cifar(2, shortcut="conv3x3"), 32, "CIFAR ResNet-14: basic blocks [2,2,2] with 3x3 conv projection shortcuts (the labml reference's first model)"),  # noqa: E501
    ("cifar_resnet20", _cifar(3), 32, f"He et al. 2016 section 4.2: n=3, {_A}"),
    ("cifar_resnet32", _cifar(5), 32, f"He et al. 2016 section 4.2: n=5, {_A}"),
    ("cifar_resnet44", _cifar(7), 32, f"He et al. 2016 section 4.2: n=7, {_A}"),
    ("cifar_resnet56", _cifar(9), 32, f"He et al. 2016 section 4.2: n=9, {_A}"),
    ("cifar_resnet110", _cifar(18), 32, f"He et al. 2016 section 4.2: n=18, {_A}"),
    ("cifar_resnet1202", _cifar(200), 32, f"He et al. 2016 section 4.2: n=200, {_A}"),
]
# fmt: on

for _name, _config, _input_size, _description in _ARCHITECTURES:
    register_model(_name, _config, input_size=_input_size, description=_description)
