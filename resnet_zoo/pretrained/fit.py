"""Fitting a state dict to a model: convert the layout, adapt the input conv, re-initialise a
head of another size, load strictly into a model built on the meta device, refuse NaN/Inf.

The model is made by a ``build(config)`` callable, so this module never imports the model
classes and each loader (:func:`load`, :func:`from_pretrained`: a resolved source into a model)
returns the class it was called on.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import ResNetConfig
from ..errors import CheckpointError
from ..manifest import PretrainedInfo
from ..registry import get_entry, list_models
from .convert import convert_state_dict
from .files import load_safetensors
from .resolve import WeightsSource, resolve_saved

__all__ = ["Build", "adapt_input_conv", "fit", "load", "from_pretrained"]


# --- from the former load.py ---

log = logging.getLogger(__name__)

# config -> a resnet_zoo model on the meta device. Typed Any: this package never imports the
# model classes, whose methods (reset_classifier) and attributes it uses.
Build = Callable[[ResNetConfig], Any]
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.")
# Above this many blocks a config that the weights cannot fill is refused before building
# (below it, building on meta is quick and the full key comparison gives the better message).
MAX_PRECHECK_BLOCKS = 1000


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv weights for ``in_channels`` inputs from RGB ones (timm's rule).

    1 channel: the sum over RGB (a grey image then gives the response to the same grey in RGB).
    More: RGB repeated, cut to ``in_channels`` and scaled by 3 / in_channels so the output's
    scale is kept.
    """
    out_ch, have, kh, kw = weight.shape
    if in_channels == have:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_channels == 1:
        if have > 3:  # sum the RGB part of a wider input, as timm does
            w = w[:, :3]
        w = w.sum(dim=1, keepdim=True)
    elif have != 3:
        raise CheckpointError(
            f"cannot adapt a first conv with {have} input channels to {in_channels}; only RGB "
            "(3-channel) weights are adapted"
        )
    else:
        repeat = -(-in_channels // 3)
        w = w.repeat(1, repeat, 1, 1)[:, :in_channels] * (3 / in_channels)
    return w.to(dtype)


def _describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _n_blocks(keys) -> int:
    return len({m.groups() for k in keys if (m := _BLOCK.match(k))})


def _fitting_architectures(sd: dict[str, torch.Tensor], build: Build, img_channels: int) -> list[str]:
    """Registered architectures whose state dict has exactly ``sd``'s keys and shapes."""

    n = _n_blocks(sd)
    ckpt_classes = _head_classes(sd, "the checkpoint")
    first = sd.get("conv1.weight")
    channels = first.shape[1] if first is not None and first.ndim == 4 else img_channels
    found = []
    for name in list_models():
        candidate = get_entry(name).config
        if sum(candidate.n_blocks) != n:
            continue
        with torch.device("meta"):
            model = build(candidate.replace(num_classes=ckpt_classes, img_channels=channels))
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        keys = set(sd) - {k for k in sd if k.endswith("num_batches_tracked")}
        if keys == set(expected) and all(tuple(sd[k].shape) == shape for k, shape in expected.items()):
            found.append(name)
    return found


def _check_against(
    model: nn.Module,
    sd: dict[str, torch.Tensor],
    *,
    label: str,
    reinit_head: bool,
    build: Build,
    config: ResNetConfig,
    arch: str | None,
) -> dict[str, torch.Tensor]:
    """Check ``sd`` against the (meta) model: names, shapes, dtypes; return what to load."""
    expected = model.state_dict()
    sd = dict(sd)
    if reinit_head:
        for k in ("fc.weight", "fc.bias"):
            sd.pop(k, None)
    for k in [k for k in sd if k.endswith("num_batches_tracked") and k not in expected]:
        del sd[k]  # a counter that a norm_layer such as FrozenBatchNorm2d does not keep
    for k in expected:
        prefix = k[: -len("num_batches_tracked")]
        if k.endswith("num_batches_tracked") and k not in sd and prefix + "running_mean" in sd:
            sd[k] = torch.zeros((), dtype=torch.long)  # a counter, not a weight: timm omits it
    head = {"fc.weight", "fc.bias"} if reinit_head else set()
    missing = set(expected) - set(sd) - head
    unexpected = set(sd) - set(expected)
    mismatched = [k for k in expected if k in sd and k not in head and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        _refuse(
            sd,
            missing,
            unexpected,
            mismatched,
            expected,
            label=label,
            build=build,
            config=config,
            arch=arch,
            n_model_blocks=_n_blocks(expected),
        )
    out: dict[str, torch.Tensor] = {}
    cast: set[torch.dtype] = set()
    for k, ref in expected.items():
        if k in head:
            continue
        t = sd[k]
        if ref.is_floating_point():
            if not t.is_floating_point():
                raise CheckpointError(
                    f"{label}: {k} has dtype {t.dtype} where floating-point weights belong; refusing it"
                )
            if t.dtype != ref.dtype:
                cast.add(t.dtype)
                t = t.to(ref.dtype)
        elif t.dtype != ref.dtype:
            if t.is_floating_point() or t.dtype == torch.bool:
                raise CheckpointError(f"{label}: {k} has dtype {t.dtype}; expected {ref.dtype}")
            t = t.to(ref.dtype)
        out[k] = t
    if cast:
        log.info("%s: cast %s weights to %s", label, sorted(str(d) for d in cast), next(iter(expected.values())).dtype)
    return out


def _refuse(
    sd,
    missing,
    unexpected,
    mismatched,
    expected,
    *,
    label: str,
    build: Build,
    config: ResNetConfig,
    arch: str | None,
    n_model_blocks: int,
) -> None:
    """Raise the CheckpointError that says why ``sd`` does not fit, and what it fits instead."""
    subject = f"this {arch} model" if arch else "this model"
    if mismatched and not (missing or unexpected):
        k = mismatched[0]
        fits = _fitting_architectures(sd, build, config.img_channels)
        raise CheckpointError(
            f"{label}: {k} has shape {list(sd[k].shape)} but this model needs "
            f"{list(expected[k].shape)} (another architecture, width or number of classes?)"
            + (f" This file fits {' and '.join(fits)}: create that architecture instead." if fits else "")
        )
    parts = []
    if missing:
        parts.append(f"missing keys: {_describe_keys(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_describe_keys(unexpected)}")
    hint = ""
    ckpt_blocks = _n_blocks(sd)
    fits = (
        []
        if any(k.startswith("module.") for k in unexpected)
        else _fitting_architectures(sd, build, config.img_channels)
    )
    if any(k.startswith("module.") for k in unexpected):
        hint = " The keys carry a 'module.' prefix (DataParallel): convert with source='auto'."
    elif ckpt_blocks and ckpt_blocks > n_model_blocks:
        hint = f" The checkpoint has {ckpt_blocks} blocks, {subject} {n_model_blocks}: it is a deeper architecture."
    elif ckpt_blocks and ckpt_blocks < n_model_blocks:
        hint = f" The checkpoint has {ckpt_blocks} blocks, {subject} {n_model_blocks}: it is a shallower architecture."
    if fits:
        hint += f" This file fits {' and '.join(fits)}: create that architecture instead."
    raise CheckpointError(f"{label} does not fit {subject}: " + "; ".join(parts) + "." + hint)


def check_finite(model: nn.Module, label: str) -> None:
    """Refuse NaN/Inf anywhere. A tensor's sum is finite when all its values are (NaN and Inf
    propagate), so one reduction per tensor replaces a full boolean mask; only a non-finite
    sum (or an overflowing one) is looked at element by element."""
    tensors = [(k, t) for k, t in model.state_dict().items() if t.is_floating_point()]
    if not tensors:
        return
    sums = torch.stack([t.sum(dtype=torch.float32) for _, t in tensors])
    for name, t in tensors:  # finite but impossible: a negative variance makes NaN at inference
        if name.endswith("running_var") and bool((t < 0).any()):
            raise CheckpointError(f"{label}: {name} has {int((t < 0).sum())} negative variances; the file is corrupt")
    if bool(torch.isfinite(sums).all()):
        return
    for (name, t), total in zip(tensors, sums.tolist()):
        if total != total or abs(total) == float("inf"):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise CheckpointError(f"{label}: {name} has {bad} NaN/Inf values; the file is corrupt")


def _head_classes(sd: dict[str, torch.Tensor], label: str) -> int:
    """The classes of the checkpoint's head (0 without one); a head that is no matrix is refused."""
    head = sd.get("fc.weight")
    if head is None:
        return 0
    if head.ndim != 2:
        raise CheckpointError(
            f"{label}: fc.weight has shape {list(head.shape)}, not [classes, features]: not a classifier head"
        )
    return int(head.shape[0])


def fit(
    build: Build,
    config: ResNetConfig,
    state_dict: dict[str, torch.Tensor],
    *,
    layout: str = "auto",
    label: str,
    num_classes_requested: bool = True,
    arch: str | None = None,
    info: PretrainedInfo | None = None,
) -> Any:
    """Convert ``state_dict`` from ``layout`` and load it strictly into ``build(config)``.

    The model is built on the meta device (no random init thrown away) and receives the
    tensors with ``assign=True``. Without ``num_classes_requested`` the head takes the
    checkpoint's number of classes; with another number than the checkpoint's, the head is
    re-initialised. ``build`` makes the whole network: a caller that wants part of it (no head,
    or a feature extractor) cuts the loaded model, as timm does.

    ``info`` becomes the model's ``pretrained_info``; its class names and reported accuracy are
    dropped where the head is re-initialised or not built.
    """
    sd = convert_state_dict(state_dict, layout, n_blocks=config.n_blocks)
    ckpt_blocks, wanted = _n_blocks(sd), sum(config.n_blocks)
    if ckpt_blocks and wanted > ckpt_blocks and wanted > MAX_PRECHECK_BLOCKS:
        # Checked before building: a config.json asking for 30,000 blocks would otherwise spend
        # minutes and gigabytes building what the file cannot fill.
        raise CheckpointError(
            f"{label} does not fit: its config asks for {wanted} blocks but the weights hold {ckpt_blocks}"
        )
    ckpt_classes = _head_classes(sd, label)
    if not num_classes_requested:
        config = config.replace(num_classes=ckpt_classes)
    first = sd.get("conv1.weight")
    if first is not None and first.ndim == 4 and first.shape[1] != config.img_channels:
        log.info("%s: adapting the first conv from %d to %d input channels", label, first.shape[1], config.img_channels)
        sd["conv1.weight"] = adapt_input_conv(first, config.img_channels)
    with torch.device("meta"):
        model = build(config)
    has_head = "fc.weight" in dict(model.named_parameters())
    reinit_head = has_head and config.num_classes != ckpt_classes
    if info is not None and (
        (not has_head and (info.labels or info.top1 is not None)) or (info.labels and len(info.labels) != ckpt_classes)
    ):
        info = info.for_new_head()  # no head, or names that do not fit it: neither applies
    model.pretrained_info = info  # reset_classifier below drops what belonged to the old head
    if reinit_head:
        log.info(
            "%s: checkpoint head has %d classes, model wants %d: the head is re-initialised",
            label,
            ckpt_classes,
            config.num_classes,
        )
    to_load = _check_against(model, sd, label=label, reinit_head=reinit_head, build=build, config=config, arch=arch)
    if reinit_head:
        model.fc = nn.Identity()
    model.load_state_dict(to_load, strict=True, assign=True)
    if reinit_head:
        model.reset_classifier(config.num_classes)
    check_finite(model, label)
    return model


# --- The loaders: a resolved WeightsSource into a model that build makes ------------------------


def load(
    source: WeightsSource, build: Build, config: ResNetConfig, *, num_classes_requested: bool, arch: str | None = None
) -> Any:
    """Read ``source`` into ``build(config)`` and attach where it came from (``pretrained_info``).

    Without ``num_classes_requested`` the head takes the checkpoint's number of classes.
    """
    state_dict, _ = load_safetensors(source.file)
    model = fit(
        build,
        config,
        state_dict,
        layout=source.layout,
        label=source.label,
        num_classes_requested=num_classes_requested,
        arch=arch,
        info=source.info,
    )
    if model.arch_name is None:
        model.arch_name = arch  # the registered name the weights were saved as
    return model


def from_pretrained(
    build: Build,
    directory_or_repo: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: Any = None,
    force_download: bool = False,
    token: Any = None,
    local_files_only: bool = False,
    **changes: Any,
) -> Any:
    """A save_pretrained directory or Hub repo into ``build(saved config with changes)``."""
    source = resolve_saved(
        directory_or_repo,
        revision=revision,
        cache_dir=cache_dir,
        force_download=force_download,
        token=token,
        local_files_only=local_files_only,
    )
    arch = source.architecture
    if source.config is not None:
        saved = source.config
    else:  # timm's or transformers' files: the architecture they name, or the one the weights fit
        if arch is None:
            arch = _only_fitting_architecture(source, build)
        saved = get_entry(arch).config
    return load(source, build, saved.replace(**changes), num_classes_requested="num_classes" in changes, arch=arch)


def _only_fitting_architecture(source: WeightsSource, build: Build) -> str:
    state_dict, _ = load_safetensors(source.file)
    sd = convert_state_dict(state_dict, source.layout)
    fits = _fitting_architectures(sd, build, 3)  # the input channels when the file has no first conv
    if len(fits) != 1:
        found = f"fit {' and '.join(fits)}" if fits else "fit no registered architecture"
        raise CheckpointError(
            f"{source.label} has no resnet_zoo config.json and its weights {found}; load it with "
            "resnet_zoo.create(ARCH, pretrained=...) naming the architecture"
        )
    return fits[0]
