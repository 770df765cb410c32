"""Name -> architecture config: a plain dict behind :func:`register_model`.

Names are data, in the spirit of litgpt's ``name_to_config``: each entry is a frozen
:class:`~resnet_zoo.config.ResNetConfig` plus the input size the network was designed for.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from .config import ResNetConfig
from .util.checks import check_positive_int
from .errors import ConfigError, UnknownModelError
from .manifest import weight_names

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
            f"unknown model {arch!r}.{hint} See resnet_zoo.list_models() for the "
            f"{len(_REGISTRY)} registered names."
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
_IMAGENET = dict(first_kernel_size=7, stem_channels=64, stem_stride=2, stem_act=True, stem_pool=True,
                 conv_bias=False, shortcut="projection", num_classes=1000)
_BASIC = dict(_IMAGENET, n_channels=(64, 128, 256, 512))
_BOTTLENECK = dict(_IMAGENET, n_channels=(256, 512, 1024, 2048))
_WIDTHS = (64, 128, 256, 512)  # the bottleneck 3x3 conv's width in each stage, x the wide factor
# The paper's CIFAR networks (section 4.2): 3x3 stem at stride 1 on 32x32 inputs, three stages of
# 16/32/64 channels with n blocks each (6n+2 layers); option A (zero-padding) shortcuts.
_CIFAR = dict(n_channels=(16, 32, 64), first_kernel_size=3, stem_stride=1, stem_act=True, stem_pool=False,
              conv_bias=False, num_classes=10)


def _wide(k: int) -> tuple[int, ...]:
    return tuple(k * w for w in _WIDTHS)


# name, config, input size, description (its paper or source)
_ARCHITECTURES = [
    ("resnet18", ResNetConfig(n_blocks=(2, 2, 2, 2), **_BASIC), 224, "He et al. 2016, basic blocks, torchvision layout"),
    ("resnet34", ResNetConfig(n_blocks=(3, 4, 6, 3), **_BASIC), 224, "He et al. 2016, basic blocks, torchvision layout"),
    ("resnet26", ResNetConfig(n_blocks=(2, 2, 2, 2), bottlenecks=_wide(1), **_BOTTLENECK), 224,
     "ResNet-26: bottleneck blocks [2,2,2,2] (the labml reference's second model), torchvision layout"),
    ("resnet50", ResNetConfig(n_blocks=(3, 4, 6, 3), bottlenecks=_wide(1), **_BOTTLENECK), 224,
     "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("resnet101", ResNetConfig(n_blocks=(3, 4, 23, 3), bottlenecks=_wide(1), **_BOTTLENECK), 224,
     "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("resnet152", ResNetConfig(n_blocks=(3, 8, 36, 3), bottlenecks=_wide(1), **_BOTTLENECK), 224,
     "He et al. 2016, bottleneck blocks, torchvision layout (v1.5)"),
    ("wide_resnet50_2", ResNetConfig(n_blocks=(3, 4, 6, 3), bottlenecks=_wide(2), **_BOTTLENECK), 224,
     "Zagoruyko & Komodakis 2016: bottleneck width x2"),
    ("wide_resnet101_2", ResNetConfig(n_blocks=(3, 4, 23, 3), bottlenecks=_wide(2), **_BOTTLENECK), 224,
     "Zagoruyko & Komodakis 2016: bottleneck width x2"),
    ("resnext50_32x4d", ResNetConfig(n_blocks=(3, 4, 6, 3), bottlenecks=_wide(2), groups=32, **_BOTTLENECK), 224,
     "Xie et al. 2017: 32 groups of width 4"),
    ("resnext101_32x8d", ResNetConfig(n_blocks=(3, 4, 23, 3), bottlenecks=_wide(4), groups=32, **_BOTTLENECK), 224,
     "Xie et al. 2017: 32 groups of width 8"),
    ("cifar_resnet14", ResNetConfig(n_blocks=(2, 2, 2), shortcut="conv3x3", **_CIFAR), 32,
     "CIFAR ResNet-14: basic blocks [2,2,2] with 3x3 conv projection shortcuts (the labml reference's first model)"),
    ("cifar_resnet20", ResNetConfig(n_blocks=(3, 3, 3), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=3, option A (zero-padding) shortcuts"),
    ("cifar_resnet32", ResNetConfig(n_blocks=(5, 5, 5), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=5, option A (zero-padding) shortcuts"),
    ("cifar_resnet44", ResNetConfig(n_blocks=(7, 7, 7), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=7, option A (zero-padding) shortcuts"),
    ("cifar_resnet56", ResNetConfig(n_blocks=(9, 9, 9), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=9, option A (zero-padding) shortcuts"),
    ("cifar_resnet110", ResNetConfig(n_blocks=(18, 18, 18), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=18, option A (zero-padding) shortcuts"),
    ("cifar_resnet1202", ResNetConfig(n_blocks=(200, 200, 200), shortcut="zero_pad", **_CIFAR), 32,
     "He et al. 2016 section 4.2: n=200, option A (zero-padding) shortcuts"),
]

for _name, _config, _input_size, _description in _ARCHITECTURES:
    register_model(_name, _config, input_size=_input_size, description=_description)
