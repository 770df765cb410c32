"""The only place that knows foreign state-dict layouts.

One table of key renames per source layout. Every key of the input must match exactly one rule
of its layout; a key no rule covers is an error that names it: nothing is dropped silently.

resnet_zoo's own layout is torchvision's: ``conv1``/``bn1`` (stem), ``layer{s}.{i}.*`` (stages
from 1, blocks from 0; ``downsample.0``/``.1`` for projections) and ``fc``. The labml
reference's layout, which this project used before it took torchvision's names, is one flat
``blocks.N`` sequence with ``conv``/``bn`` for the stem and ``shortcut.conv``/``shortcut.bn``.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

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

#: Layouts ``convert_state_dict`` understands ("resnet_zoo" and "timm" are torchvision's key
#: layout; "labml" is also this project's layout before it took torchvision's names).
SOURCES = ("auto", "resnet_zoo", "labml", "torchvision", "timm", "transformers", "cifar")

# Wrappers whose prefix is stripped first: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

# (pattern, template): "{1}", "{2}", ... are the pattern's groups; "{s}.{i}" is the block's stage
# (from 1) and index, from groups 1 and 2 (transformers counts stages from 0; the labml layout
# numbers blocks in one flat sequence); "{k}" is group 3 + 1.
Rule = tuple[str, str]

_TORCHVISION: list[Rule] = [
    (rf"(conv1|bn1)\.{_PARAM}", r"{1}.{2}"),
    (rf"layer(\d+)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.{_PARAM}", r"layer{s}.{i}.{3}.{4}"),
    (r"fc\.(weight|bias)", r"fc.{1}"),
]

_LABML: list[Rule] = [
    (rf"conv\.{_PARAM}", r"conv1.{1}"),
    (rf"bn\.{_PARAM}", r"bn1.{1}"),
    (rf"blocks\.(\d+)\.(conv[123]|bn[123])\.{_PARAM}", r"layer{s}.{i}.{2}.{3}"),
    (rf"blocks\.(\d+)\.shortcut\.conv\.{_PARAM}", r"layer{s}.{i}.downsample.0.{2}"),
    (rf"blocks\.(\d+)\.shortcut\.bn\.{_PARAM}", r"layer{s}.{i}.downsample.1.{2}"),
    (r"fc\.(weight|bias)", r"fc.{1}"),
]

# Common CIFAR checkpoints: kuangliu/akamaster style ("conv1", "shortcut.0/1", "linear") and
# the labml reference's CIFAR ResNet-14 ("conv"/"bn" stem, "downsample.0/1", "fc").
_CIFAR: list[Rule] = [
    (rf"conv1?\.{_PARAM}", r"conv1.{1}"),
    (rf"bn1?\.{_PARAM}", r"bn1.{1}"),
    (rf"layer(\d+)\.(\d+)\.(conv[12]|bn[12])\.{_PARAM}", r"layer{s}.{i}.{3}.{4}"),
    (rf"layer(\d+)\.(\d+)\.(?:downsample|shortcut)\.([01])\.{_PARAM}", r"layer{s}.{i}.downsample.{3}.{4}"),
    (r"(?:linear|fc)\.(weight|bias)", r"fc.{1}"),
]

# transformers' ResNetModel / ResNetForImageClassification (microsoft/resnet-50); stages and
# layers count from 0, and a block's three conv layers are "layer.0/1/2".
_HF_PREFIX = r"(?:resnet\.)?"
_HF_BLOCK = rf"{_HF_PREFIX}encoder\.stages\.(\d+)\.layers\.(\d+)"
_TRANSFORMERS: list[Rule] = [
    (rf"{_HF_PREFIX}embedder\.embedder\.convolution\.weight", r"conv1.weight"),
    (rf"{_HF_PREFIX}embedder\.embedder\.normalization\.{_PARAM}", r"bn1.{1}"),
    (rf"{_HF_BLOCK}\.shortcut\.convolution\.weight", r"layer{s}.{i}.downsample.0.weight"),
    (rf"{_HF_BLOCK}\.shortcut\.normalization\.{_PARAM}", r"layer{s}.{i}.downsample.1.{3}"),
    (rf"{_HF_BLOCK}\.layer\.([012])\.convolution\.weight", r"layer{s}.{i}.conv{k}.weight"),
    (rf"{_HF_BLOCK}\.layer\.([012])\.normalization\.{_PARAM}", r"layer{s}.{i}.bn{k}.{4}"),
    (r"classifier\.1\.(weight|bias)", r"fc.{1}"),
]

_RULES: dict[str, list[Rule]] = {
    "resnet_zoo": _TORCHVISION,
    "labml": _LABML,
    "torchvision": _TORCHVISION,
    "timm": _TORCHVISION,
    "cifar": _CIFAR,
    "transformers": _TRANSFORMERS,
}

_STAGED = {
    "resnet_zoo": re.compile(r"^layer(\d+)\.(\d+)\."),
    "torchvision": re.compile(r"^layer(\d+)\.(\d+)\."),
    "timm": re.compile(r"^layer(\d+)\.(\d+)\."),
    "cifar": re.compile(r"^layer(\d+)\.(\d+)\."),
    "transformers": re.compile(rf"^{_HF_BLOCK}\."),
}
_FLAT = re.compile(r"^blocks\.(\d+)\.")


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
        return "labml"
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


def _check_indices(seen: dict[int, set[int]], source: str, what: str) -> None:
    """Indices must be exactly 0..n-1 (n is then bounded by the number of keys): a key like
    layer1.999999999.conv1.weight must not make us build 10^9 entries."""
    for stage, indices in sorted(seen.items()):
        if len(indices) != max(indices) + 1:
            missing = sorted(set(range(min(len(indices) + 1, max(indices)))) - indices)[:3]
            raise CheckpointError(
                f"{source} checkpoint: {what}{stage} has block indices up to {max(indices)} but only "
                f"{len(indices)} blocks (missing {missing}...); block indices must be 0..n-1"
            )


def _staged_positions(keys: list[str], pattern: re.Pattern[str], source: str) -> dict[tuple[int, ...], tuple[int, int]]:
    """(stage, index) as the keys number them -> (stage from 1, index)."""
    seen: dict[int, set[int]] = {}
    for k in keys:
        m = pattern.match(k)
        if m:
            seen.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not seen:
        return {}
    _check_indices(seen, source, "stage ")
    first = 0 if source == "transformers" else 1
    expected = list(range(first, first + len(seen)))
    if sorted(seen) != expected:
        raise CheckpointError(f"{source} checkpoint has stages {sorted(seen)}; expected consecutive stages {expected}")
    return {(stage, i): (stage - first + 1, i) for stage, indices in seen.items() for i in indices}


def _flat_positions(
    sd: Mapping[str, torch.Tensor], n_blocks: Sequence[int] | None
) -> dict[tuple[int, ...], tuple[int, int]]:
    """Flat block number -> (stage from 1, index), for the labml layout. With ``n_blocks`` (the
    config the file is loaded into) when it counts the file's blocks; otherwise read from the
    weights: a stage starts at the first block, at a block with a projection shortcut, and where
    the blocks' output width changes."""
    indices = {int(m.group(1)) for k in sd if (m := _FLAT.match(k))}
    if not indices:
        return {}
    _check_indices({0: indices}, "labml", "the flat sequence ")
    n = len(indices)
    if n_blocks is None or sum(n_blocks) != n:
        n_blocks = _stages_from_widths(sd, n)
    out: dict[tuple[int, ...], tuple[int, int]] = {}
    g = 0
    for stage, count in enumerate(n_blocks, start=1):
        for i in range(count):
            out[(g,)] = (stage, i)
            g += 1
    return out


def _stages_from_widths(sd: Mapping[str, torch.Tensor], n: int) -> list[int]:
    counts: list[int] = []
    width = None
    for g in range(n):
        last_bn = sd.get(f"blocks.{g}.bn3.weight", sd.get(f"blocks.{g}.bn2.weight"))
        out = tuple(last_bn.shape) if last_bn is not None else None
        projected = f"blocks.{g}.shortcut.conv.weight" in sd
        if not counts or projected or out != width:
            counts.append(0)
        counts[-1] += 1
        width = out
    return counts


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], source: str = "auto", *, n_blocks: Sequence[int] | None = None
) -> dict[str, torch.Tensor]:
    """Rename the keys of a foreign ResNet state dict to resnet_zoo's layout (torchvision's names).

    Args:
        state_dict: tensors by key, as saved by torchvision, timm, transformers, the labml
            reference, a common CIFAR ResNet or resnet_zoo (a ``module.`` prefix is stripped).
        source: one of SOURCES; "auto" detects it from the keys.
        n_blocks: blocks per stage of the model it is for; only the labml layout, which numbers
            its blocks in one sequence, needs it, and without it the stages are read from the
            weights (where the blocks' width changes, or a projection shortcut starts one).

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
    if source == "auto" or (source == "resnet_zoo" and any(_FLAT.match(k) for k in sd)):
        source = detect_layout(sd)  # "resnet_zoo" files written before its names were torchvision's
        log.debug("detected the %s layout", source)
    rules = [(re.compile(p + "$"), r) for p, r in _RULES[source]]
    staged = _STAGED.get(source)
    if source == "labml":
        positions = _flat_positions(sd, n_blocks)
    else:
        positions = _staged_positions(list(sd), staged, source) if staged else {}
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in sd.items():
        new = _rename(key, rules, positions, 1 if source == "labml" else 2)
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


def _rename(key: str, rules: list[tuple[re.Pattern[str], str]], positions: dict, arity: int) -> str | None:
    for pattern, template in rules:
        m = pattern.match(key)
        if m:
            fields: dict[str, object] = {}
            if "{s}" in template:  # the block's numbers: (flat index,) or (stage, index)
                fields["s"], fields["i"] = positions[tuple(int(g) for g in m.groups()[:arity])]
            if "{k}" in template:
                fields["k"] = int(m.group(3)) + 1
            return template.format(m.group(0), *m.groups(), **fields)
    return None


#: Layouts ``export_state_dict`` writes, and the registered architectures each library builds
#: under the same name (timm's ResNet-26 has no torchvision twin; the CIFAR ResNets have neither).
EXPORT_LAYOUTS = ("resnet_zoo", "torchvision", "timm", "transformers")
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
    "resnext101_64x4d",
)
TIMM_ARCHS = ("resnet26",) + TORCHVISION_ARCHS


def _torchvision_shaped(config) -> str | None:
    """Why a config has no torchvision/timm layout (None: it has one)."""
    c = config
    checks = [
        (c.n_stages == 4, f"{c.n_stages} stages, not 4"),
        *_imagenet_stem_checks(c),
        (tuple(c.strides) == (1, 2, 2, 2), f"stage strides {list(c.strides)}, not [1, 2, 2, 2]"),
        (c.stem_out_channels == 64, f"a {c.stem_out_channels}-channel stem, not 64"),
    ]
    return "; ".join(why for ok, why in checks if not ok) or None


def _imagenet_stem_checks(c) -> list[tuple[bool, str]]:
    """What torchvision's, timm's and transformers' ResNets all build: the 7x7 stride-2 stem
    with ReLU and max-pool, bias-free convolutions and 1x1 projection shortcuts."""
    return [
        (
            c.first_kernel_size == 7 and c.stem_stride == 2 and c.stem_pool and c.stem_act,
            "a stem other than the 7x7 stride-2 conv, ReLU and max pool",
        ),
        (not c.conv_bias, "convolutions with biases"),
        (c.shortcut == "projection", f"{c.shortcut!r} shortcuts (theirs are 1x1 projections)"),
    ]


def transformers_shaped(config) -> str | None:
    """Why transformers' ResNetModel cannot express a config (None: it can). It builds a 7x7
    stride-2 stem with ReLU and max-pool, bias-free convs, 1x1 projection shortcuts, the first
    stage at stride 1 and the others at 2, and bottlenecks a quarter as wide as their stage."""
    c = config
    checks = [
        *_imagenet_stem_checks(c),
        (tuple(c.strides) == (1,) + (2,) * (c.n_stages - 1), f"stage strides {list(c.strides)}"),
        (not c.replace_stride_with_dilation or not any(c.replace_stride_with_dilation), "dilated stages"),
        (c.groups == 1, f"grouped convolutions (groups={c.groups})"),
        (
            c.bottlenecks is None or all(b * 4 == n for b, n in zip(c.bottlenecks, c.n_channels)),
            "bottlenecks that are not a quarter of their stage's width",
        ),
        (c.global_pool == "avg", f"global_pool={c.global_pool!r}"),
    ]
    return "; ".join(why for ok, why in checks if not ok) or None


_TRANSFORMERS_OUT = [
    (re.compile(r"conv1\.weight$"), "resnet.embedder.embedder.convolution.weight"),
    (re.compile(rf"bn1\.{_PARAM}$"), "resnet.embedder.embedder.normalization.{1}"),
    (
        re.compile(r"layer(\d+)\.(\d+)\.conv([123])\.weight$"),
        "resnet.encoder.stages.{s}.layers.{2}.layer.{k}.convolution.weight",
    ),
    (
        re.compile(rf"layer(\d+)\.(\d+)\.bn([123])\.{_PARAM}$"),
        "resnet.encoder.stages.{s}.layers.{2}.layer.{k}.normalization.{4}",
    ),
    (
        re.compile(r"layer(\d+)\.(\d+)\.downsample\.0\.weight$"),
        "resnet.encoder.stages.{s}.layers.{2}.shortcut.convolution.weight",
    ),
    (
        re.compile(rf"layer(\d+)\.(\d+)\.downsample\.1\.{_PARAM}$"),
        "resnet.encoder.stages.{s}.layers.{2}.shortcut.normalization.{3}",
    ),
    (re.compile(r"fc\.(weight|bias)$"), "classifier.1.{1}"),
]


def _to_transformers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state_dict.items():
        for pattern, template in _TRANSFORMERS_OUT:
            if m := pattern.match(key):
                g = m.groups()
                fields: dict[str, int] = {}
                if key.startswith("layer"):  # stages and conv layers count from 0 in transformers
                    fields["s"] = int(g[0]) - 1
                    if "downsample" not in key:
                        fields["k"] = int(g[2]) - 1
                out[template.format(m.group(0), *g, **fields)] = tensor
                break
        else:
            raise ConfigError(f"{key!r} has no place in transformers' ResNet")
    return out


def export_state_dict(model, layout: str = "torchvision") -> dict[str, torch.Tensor]:
    """A resnet_zoo model's state dict in another library's key layout.

    ``layout="torchvision"`` loads strictly into ``torchvision.models.<arch>()`` and
    ``layout="timm"`` into ``timm.create_model("<arch>")`` for every architecture they share
    with resnet_zoo. The keys are the model's own (resnet_zoo uses torchvision's names); what
    these layouts add is the check that the library builds this network. The tensors are the
    model's (not copies).

    Raises:
        ConfigError: an unknown layout, or a network that layout cannot express (the CIFAR
            ResNets, option-A shortcuts, another stem), naming what differs.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ConfigError(f"layout must be one of {list(EXPORT_LAYOUTS)}, got {layout!r}")
    state_dict = model.state_dict()
    if layout == "resnet_zoo":
        return dict(state_dict)
    if layout == "transformers":
        why = transformers_shaped(model.config)
        if why is not None:
            arch = getattr(model, "arch_name", None) or "this model"
            raise ConfigError(f"{arch} has no transformers layout: transformers' ResNet cannot express {why}")
        return _to_transformers(state_dict)
    why = _torchvision_shaped(model.config)
    if why is not None:
        arch = getattr(model, "arch_name", None) or "this model"
        raise ConfigError(
            f"{arch} has no {layout} layout: it has {why}. {layout} builds "
            f"{', '.join(TIMM_ARCHS if layout == 'timm' else TORCHVISION_ARCHS)}"
        )
    return dict(state_dict)  # resnet_zoo's names are torchvision's and timm's
