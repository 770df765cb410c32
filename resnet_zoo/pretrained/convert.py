"""The only place that knows foreign state-dict layouts.

One table of key renames per source layout. Every key of the input must match exactly one rule
of its layout; a key no rule covers is an error that names it: nothing is dropped silently.

resnet_zoo's own layout is the labml reference's: ``conv``/``bn`` (stem), ``blocks.N.*`` (one
flat sequence of blocks, ``shortcut.conv``/``shortcut.bn`` for projections) and ``fc``.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping

import torch

from ..errors import CheckpointError, ConfigError

__all__ = [
    "SOURCES",
    "EXPORT_LAYOUTS",
    "TORCHVISION_ARCHS",
    "TIMM_ARCHS",
    "convert_state_dict",
    "detect_layout",
    "export_state_dict",
]

log = logging.getLogger(__name__)

#: Layouts ``convert_state_dict`` understands ("timm" is torchvision's key layout).
SOURCES = ("auto", "resnet_zoo", "labml", "torchvision", "timm", "transformers", "cifar")

# Wrappers whose prefix is stripped first: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_BLOCK_PARTS = r"(conv[123]|bn[123]|shortcut\.conv|shortcut\.bn)"
_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

# (pattern, template): "{1}", "{2}", ... are the pattern's groups; "{g}" is the block's index in
# resnet_zoo's flat sequence, computed from groups 1 and 2 (stage, index); "{k}" is group 3 + 1.
Rule = tuple[str, str]

_NATIVE: list[Rule] = [
    (rf"(conv|bn)\.{_PARAM}", r"{1}.{2}"),
    (rf"blocks\.(\d+)\.{_BLOCK_PARTS}\.{_PARAM}", r"blocks.{1}.{2}.{3}"),
    (r"fc\.(weight|bias)", r"fc.{1}"),
]

_TORCHVISION: list[Rule] = [
    (rf"conv1\.{_PARAM}", r"conv.{1}"),
    (rf"bn1\.{_PARAM}", r"bn.{1}"),
    (rf"layer(\d+)\.(\d+)\.(conv[123]|bn[123])\.{_PARAM}", r"blocks.{g}.{3}.{4}"),
    (rf"layer(\d+)\.(\d+)\.downsample\.0\.{_PARAM}", r"blocks.{g}.shortcut.conv.{3}"),
    (rf"layer(\d+)\.(\d+)\.downsample\.1\.{_PARAM}", r"blocks.{g}.shortcut.bn.{3}"),
    (r"fc\.(weight|bias)", r"fc.{1}"),
]

# Common CIFAR checkpoints: kuangliu/akamaster style ("conv1", "shortcut.0/1", "linear") and
# the labml reference's CIFAR ResNet-14 ("conv"/"bn" stem, "downsample.0/1", "fc").
_CIFAR: list[Rule] = [
    (rf"conv1?\.{_PARAM}", r"conv.{1}"),
    (rf"bn1?\.{_PARAM}", r"bn.{1}"),
    (rf"layer(\d+)\.(\d+)\.(conv[12]|bn[12])\.{_PARAM}", r"blocks.{g}.{3}.{4}"),
    (rf"layer(\d+)\.(\d+)\.(?:downsample|shortcut)\.0\.{_PARAM}", r"blocks.{g}.shortcut.conv.{3}"),
    (rf"layer(\d+)\.(\d+)\.(?:downsample|shortcut)\.1\.{_PARAM}", r"blocks.{g}.shortcut.bn.{3}"),
    (r"(?:linear|fc)\.(weight|bias)", r"fc.{1}"),
]

# transformers' ResNetModel / ResNetForImageClassification (microsoft/resnet-50); stages and
# layers count from 0, and a block's three conv layers are "layer.0/1/2".
_HF_PREFIX = r"(?:resnet\.)?"
_TRANSFORMERS: list[Rule] = [
    (rf"{_HF_PREFIX}embedder\.embedder\.convolution\.weight", r"conv.weight"),
    (rf"{_HF_PREFIX}embedder\.embedder\.normalization\.{_PARAM}", r"bn.{1}"),
    (
        rf"{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
        r"blocks.{g}.shortcut.conv.weight",
    ),
    (
        rf"{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.{_PARAM}",
        r"blocks.{g}.shortcut.bn.{3}",
    ),
    (
        rf"{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.([012])\.convolution\.weight",
        r"blocks.{g}.conv{k}.weight",
    ),
    (
        rf"{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.([012])\.normalization\.{_PARAM}",
        r"blocks.{g}.bn{k}.{4}",
    ),
    (r"classifier\.1\.(weight|bias)", r"fc.{1}"),
]

_RULES: dict[str, list[Rule]] = {
    "resnet_zoo": _NATIVE,
    "labml": _NATIVE,
    "torchvision": _TORCHVISION,
    "timm": _TORCHVISION,
    "cifar": _CIFAR,
    "transformers": _TRANSFORMERS,
}

_STAGED = {
    "torchvision": re.compile(r"^layer(\d+)\.(\d+)\."),
    "timm": re.compile(r"^layer(\d+)\.(\d+)\."),
    "cifar": re.compile(r"^layer(\d+)\.(\d+)\."),
    "transformers": re.compile(rf"^{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)\."),
}


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = dict(state_dict)
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                log.info("stripping the %r prefix of every key (a DataParallel/DDP or compiled model)", prefix)
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the key layout of ``state_dict`` (one of SOURCES other than "auto")."""
    keys = list(_strip_wrappers(state_dict))
    if not keys:
        raise CheckpointError("the state dict is empty: no tensors to load")
    # Detection looks past a wrapper prefix that only some keys carry; conversion then names them.
    for prefix in _WRAPPER_PREFIXES:
        keys = [k[len(prefix) :] if k.startswith(prefix) else k for k in keys]
    if any(re.match(rf"{_HF_PREFIX}embedder\.embedder\.", k) for k in keys):
        return "transformers"
    if any(k.startswith("blocks.") for k in keys):
        return "resnet_zoo"
    stages = {m.group(1) for k in keys if (m := re.match(r"layer(\d+)\.", k))}
    if stages:
        cifar_marks = (
            "linear.weight" in keys or "conv.weight" in keys or any(".shortcut." in k for k in keys) or len(stages) == 3
        )
        return "cifar" if cifar_marks else "torchvision"
    sample = ", ".join(keys[:5])
    raise CheckpointError(
        f"cannot tell the layout of this state dict (first keys: {sample}); pass source= one of "
        f"{', '.join(s for s in SOURCES if s != 'auto')}"
    )


def _block_offsets(keys: list[str], pattern: re.Pattern[str], source: str) -> dict[tuple[int, int], int]:
    """(stage, index) -> position in the flat block sequence, from the keys themselves."""
    seen: dict[int, set[int]] = {}
    for k in keys:
        m = pattern.match(k)
        if m:
            seen.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not seen:
        return {}
    # Block indices must be exactly 0..n-1 in every stage (n is then bounded by the number of
    # keys): a key like layer1.999999999.conv1.weight must not make us build 10^9 entries.
    for stage, indices in sorted(seen.items()):
        if len(indices) != max(indices) + 1:
            missing = sorted(set(range(min(len(indices) + 1, max(indices)))) - indices)[:3]
            raise CheckpointError(
                f"{source} checkpoint: stage {stage} has block indices up to {max(indices)} but only "
                f"{len(indices)} blocks (missing {missing}...); block indices must be 0..n-1"
            )
    counts = {stage: len(indices) for stage, indices in seen.items()}
    first = 0 if source == "transformers" else 1
    expected = list(range(first, first + len(counts)))
    if sorted(counts) != expected:
        raise CheckpointError(
            f"{source} checkpoint has stages {sorted(counts)}; expected consecutive stages {expected}"
        )
    offsets: dict[tuple[int, int], int] = {}
    start = 0
    for stage in expected:
        for idx in range(counts[stage]):
            offsets[(stage, idx)] = start + idx
        start += counts[stage]
    return offsets


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], source: str = "auto") -> dict[str, torch.Tensor]:
    """Rename the keys of a foreign ResNet state dict to resnet_zoo's layout.

    Args:
        state_dict: tensors by key, as saved by torchvision, timm, transformers, the labml
            reference, a common CIFAR ResNet or resnet_zoo (a ``module.`` prefix is stripped).
        source: one of SOURCES; "auto" detects it from the keys.

    Returns:
        a new dict with the same tensors under resnet_zoo's key names.

    Raises:
        CheckpointError: the source is unknown, or a key matches no rule of its layout.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"a state dict is a mapping of names to tensors, got {type(state_dict).__name__}")
    if source not in SOURCES:
        raise CheckpointError(f"unknown source layout {source!r}; choose one of {', '.join(SOURCES)}")
    for k, v in state_dict.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"state dict entry {k!r} is a {type(v).__name__}; expected str keys and torch.Tensor values"
            )
    sd = _strip_wrappers(state_dict)
    if source == "auto":
        source = detect_layout(sd)
        log.debug("detected the %s layout", source)
    rules = [(re.compile(p + "$"), r) for p, r in _RULES[source]]
    staged = _STAGED.get(source)
    offsets = _block_offsets(list(sd), staged, source) if staged else {}
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in sd.items():
        new = _rename(key, rules, offsets)
        if new is None:
            hint = ""
            if key.startswith(_WRAPPER_PREFIXES):
                hint = (
                    f" Only some keys carry the {key.split('.')[0]!r} prefix (DataParallel/DDP "
                    "or torch.compile); strip it from every key, or save the inner model's state dict."
                )
            raise CheckpointError(
                f"key {key!r} matches no rule of the {source} layout; is this a ResNet checkpoint "
                f"of that layout? (source= one of {', '.join(SOURCES)}).{hint}"
            )
        if new in out:
            raise CheckpointError(f"keys {origin[new]!r} and {key!r} both map to {new!r}")
        out[new] = tensor
        origin[new] = key
    return out


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]], offsets: dict) -> str | None:
    for pattern, template in rules:
        m = pattern.match(key)
        if m:
            fields: dict[str, object] = {}
            if "{g}" in template:
                fields["g"] = offsets[(int(m.group(1)), int(m.group(2)))]
            if "{k}" in template:
                fields["k"] = int(m.group(3)) + 1
            return template.format(m.group(0), *m.groups(), **fields)
    return None


#: Layouts ``export_state_dict`` writes, and the registered architectures each library builds
#: under the same name (timm's ResNet-26 has no torchvision twin; the CIFAR ResNets have neither).
EXPORT_LAYOUTS = ("resnet_zoo", "torchvision", "timm")
TORCHVISION_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
)
TIMM_ARCHS = ("resnet26",) + TORCHVISION_ARCHS

_EXPORT_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_EXPORT_PART = {"shortcut.conv": "downsample.0", "shortcut.bn": "downsample.1"}


def _torchvision_shaped(config) -> str | None:
    """Why a config has no torchvision/timm layout (None: it has one)."""
    c = config
    checks = [
        (c.n_stages == 4, f"{c.n_stages} stages, not 4"),
        (
            c.first_kernel_size == 7 and c.stem_stride == 2 and c.stem_pool and c.stem_act,
            "a stem other than the 7x7 stride-2 conv, ReLU and max pool",
        ),
        (not c.conv_bias, "convolutions with biases"),
        (c.shortcut == "projection", f"{c.shortcut!r} shortcuts (torchvision's are 1x1 projections)"),
        (tuple(c.strides) == (1, 2, 2, 2), f"stage strides {list(c.strides)}, not [1, 2, 2, 2]"),
        (c.stem_out_channels == 64, f"a {c.stem_out_channels}-channel stem, not 64"),
    ]
    reasons = [why for ok, why in checks if not ok]
    return "; ".join(reasons) or None


def export_state_dict(model, layout: str = "torchvision") -> dict[str, torch.Tensor]:
    """A resnet_zoo model's state dict in another library's key layout.

    ``layout="torchvision"`` loads strictly into ``torchvision.models.<arch>()`` and
    ``layout="timm"`` into ``timm.create_model("<arch>")`` (the same keys: ``conv1``, ``bn1``,
    ``layer{s}.{i}.*``, ``downsample.0/1``, ``fc``) for every architecture they share with
    resnet_zoo; ``"resnet_zoo"`` is the model's own. The tensors are the model's (not copies).

    Raises:
        ConfigError: an unknown layout, or a network that layout cannot express (the CIFAR
            ResNets, option-A shortcuts, another stem), naming what differs.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ConfigError(f"layout must be one of {list(EXPORT_LAYOUTS)}, got {layout!r}")
    state_dict = model.state_dict()
    if layout == "resnet_zoo":
        return dict(state_dict)
    config = model.config
    why = _torchvision_shaped(config)
    if why is not None:
        arch = getattr(model, "arch_name", None) or "this model"
        raise ConfigError(
            f"{arch} has no {layout} layout: it has {why}. {layout} builds "
            f"{', '.join(TIMM_ARCHS if layout == 'timm' else TORCHVISION_ARCHS)}"
        )
    where: dict[int, tuple[int, int]] = {}
    g = 0
    for stage, n in enumerate(config.n_blocks):
        for i in range(n):
            where[g] = (stage + 1, i)
            g += 1
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key.startswith("conv."):
            new = "conv1." + key[len("conv.") :]
        elif key.startswith("bn."):
            new = "bn1." + key[len("bn.") :]
        elif (m := _EXPORT_BLOCK.match(key)) is not None:
            stage, i = where[int(m.group(1))]
            rest = m.group(2)
            for ours, theirs in _EXPORT_PART.items():
                if rest.startswith(ours + "."):
                    rest = theirs + rest[len(ours) :]
            new = f"layer{stage}.{i}.{rest}"
        else:
            new = key  # fc.weight, fc.bias
        out[new] = tensor
    return out
