"""create(): a name, resolved once, to a config, built once, with its weights fitted.

name -> registry (entry, tag) -> pretrained.resolve (one WeightsSource) -> config
     -> build (meta when weights follow) -> pretrained.load (fit, strict, finite)
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any, Sequence

from .errors import CheckpointError, ConfigError
from .manifest import PretrainedInfo, get_weights
from .model import ResNet, ResNetBase, ResNetFeatures
from .pretrained.convert import detect_layout
from .pretrained.files import read_checkpoint
from .pretrained.fit import fit, load
from .pretrained.resolve import resolve
from .registry import get_entry, resolve_name
from .timm_api import resolve_out_indices
from .util.checks import check_int

__all__ = ["create", "convert_checkpoint"]

log = logging.getLogger(__name__)

# Fields a caller may change on pretrained weights without changing the architecture.
_HEAD_AND_INPUT = ("num_classes", "img_channels", "zero_init_residual")


def create(
    name: str,
    *,
    pretrained: Any = False,
    num_classes: int | None = None,
    img_channels: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
    cache_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    norm_layer: Any = None,
    width_per_group: int | None = None,
    **overrides: Any,
) -> ResNetBase:
    """Build a registered ResNet by name, optionally with pretrained weights.

    Args:
        name: a registered architecture (``"resnet50"``) or one with a weights tag
            (``"resnet50.tv_in1k"``: the tag ``pretrained=True`` loads).
        pretrained: ``False``; ``True`` (the name's tag, else the architecture's default tag);
            a tag; ``"hf-hub:owner/repo[@rev]"``; a local ``.safetensors`` file; a
            ``save_pretrained`` directory.
        num_classes: classes of the head (0 = no head). Default: the architecture's, or the
            checkpoint's when loading weights; a different number re-initialises the head.
        img_channels: input channels; with RGB weights the first conv is adapted.
        features_only: return a :class:`ResNetFeatures` whose forward gives per-stage maps.
        out_indices: which maps (timm's semantics); only with ``features_only=True``.
        cache_dir: Hub cache directory (default: ``HF_HUB_CACHE`` or huggingface_hub's).
        revision: Hub revision (branch, tag or commit) of the weights.
        norm_layer: torchvision's: makes every norm layer from its channel count (default
            ``nn.BatchNorm2d``; detection passes ``torchvision.ops.FrozenBatchNorm2d``).
        width_per_group: torchvision's: with ``groups``, sets the bottleneck widths as its
            builders do (``create("resnet50", groups=32, width_per_group=4)`` is ResNeXt-50 32x4d).
        **overrides: any :class:`~resnet_zoo.config.ResNetConfig` field; a name that is not a
            field raises :class:`~resnet_zoo.errors.ConfigError`.

    Returns:
        a :class:`ResNet` (or :class:`ResNetFeatures`) in training mode, like torchvision's
        builders: call ``.eval()`` before inference.
    """
    entry, tag = resolve_name(name)
    changes = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if img_channels is not None:
        changes["img_channels"] = img_channels
    if width_per_group is not None:
        changes["bottlenecks"] = _grouped_widths(
            entry.name, entry.config, changes.get("groups", entry.config.groups), width_per_group
        )
    config = entry.config.replace(**changes)  # validates every override, weights or not
    if not isinstance(features_only, bool):
        raise ConfigError(f"features_only must be True or False, got {features_only!r}")
    if out_indices is not None and not features_only:
        raise ConfigError("out_indices only applies with features_only=True")
    if features_only:
        resolve_out_indices(out_indices, config.n_stages + 1)  # refused before any download
    # timm's order: the whole network is built (on meta when weights follow) and loaded
    # strictly, then cut to the maps asked for.
    build = partial(ResNet.from_config, arch_name=entry.name, norm_layer=norm_layer)
    wants_weights = pretrained is not False and pretrained is not None
    if tag is not None and isinstance(pretrained, str) and pretrained != tag:
        raise ConfigError(f"{name!r} names the tag {tag!r} but pretrained={pretrained!r}; give one of them")
    if not wants_weights:
        if tag is not None:
            get_weights(entry.name, tag)  # an unknown tag fails even without weights
        return _cut(build(config), features_only, out_indices)

    source = resolve(entry.name, tag, pretrained, cache_dir=cache_dir, revision=revision)
    if source.config is not None:  # saved with its full config: it must be this architecture
        theirs, ours = _architecture(source.config), _architecture(entry.config)
        if theirs != ours:
            diff = sorted(k for k, v in theirs.items() if ours[k] != v)
            raise CheckpointError(
                f"{source.label} holds a different architecture than {entry.name!r} "
                f"(differs in {', '.join(diff)})"
                + (f": it was saved as {source.architecture!r}" if source.architecture else "")
                + "; load it with ResNet.from_pretrained"
            )
        config = source.config.replace(**changes)
    model = load(source, build, config, num_classes_requested="num_classes" in changes, arch=entry.name)
    return _cut(model, features_only, out_indices)


def _cut(model: ResNetBase, features_only: bool, out_indices: Sequence[int] | int | None) -> ResNetBase:
    return ResNetFeatures.from_model(model, out_indices) if features_only else model


def _architecture(config: Any) -> dict[str, Any]:
    d = config.to_dict()
    for k in _HEAD_AND_INPUT:
        d.pop(k)
    return d


def _grouped_widths(name: str, config: Any, groups: Any, width_per_group: Any) -> tuple[int, ...]:
    """Bottleneck widths as torchvision's builders compute them (``Bottleneck.__init__``):
    ``int(planes * width_per_group / 64) * groups``, where planes is a quarter of the stage's output."""
    check_int("width_per_group", width_per_group, low=1)
    check_int("groups", groups, low=1)
    if config.bottlenecks is None:
        raise ConfigError(
            f"width_per_group applies to bottleneck blocks; {name} has basic blocks "
            "(torchvision's BasicBlock only supports groups=1 and width_per_group=64)"
        )
    return tuple(int(channels // 4 * width_per_group / 64) * groups for channels in config.n_channels)


def convert_checkpoint(
    src: str | os.PathLike,
    arch: str,
    out: str | os.PathLike,
    *,
    source: str = "auto",
    num_classes: int | None = None,
) -> ResNetBase:
    """Turn a foreign checkpoint (``.pth`` read with ``weights_only=True``, or ``.safetensors``)
    into a ``save_pretrained`` directory that ``create(arch, pretrained=out)`` loads."""

    entry = get_entry(arch)
    state_dict = read_checkpoint(src)
    config = entry.config if num_classes is None else entry.config.replace(num_classes=num_classes)
    model = fit(
        partial(ResNet.from_config, arch_name=entry.name),
        config,
        state_dict,
        layout=source,
        label=str(src),
        num_classes_requested=num_classes is not None,
        arch=entry.name,
    )
    layout = detect_layout(state_dict) if source == "auto" else source
    model.pretrained_info = PretrainedInfo(source=str(src), extra={"converted_from": layout})
    model.save_pretrained(out)
    return model
