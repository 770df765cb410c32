"""create(): a name, resolved once, to a config, built once, with its weights fitted.

name -> registry (entry, tag) -> pretrained.resolve (one WeightsSource) -> config
     -> build (meta when weights follow) -> pretrained.load (fit, strict, finite)
"""

from __future__ import annotations

import dataclasses
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

__all__ = ["create", "create_for_hub", "convert_checkpoint"]

log = logging.getLogger(__name__)

# Fields a caller may change on pretrained weights without changing the architecture.
_HEAD_AND_INPUT = ("num_classes", "img_channels", "zero_init_residual")


def create(
    name: str, *, pretrained: Any = False, num_classes: int | None = None, img_channels: int | None = None,
    features_only: bool = False, out_indices: Sequence[int] | int | None = None,
    cache_dir: str | os.PathLike | None = None, revision: str | None = None,
    # torchvision's builder keywords, then timm's (create_model's)
    norm_layer: Any = None, width_per_group: int | None = None,
    in_chans: int | None = None, pretrained_cfg: Any = None, pretrained_cfg_overlay: dict[str, Any] | None = None,
    feature_cls: str | None = None, device: Any = None, dtype: Any = None,
    **overrides: Any,
) -> ResNetBase:  # fmt: skip
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
        in_chans, pretrained_cfg, pretrained_cfg_overlay, feature_cls, device, dtype: taken as
            ``timm.create_model`` takes them: ``in_chans`` is ``img_channels``;
            ``pretrained_cfg`` a tag; the overlay's ``file`` or ``hf_hub_id`` says where the
            weights are, its ``mean``, ``std``, ``crop_pct``, ``interpolation`` and
            ``input_size`` change the preprocessing; ``feature_cls`` any of timm's list-returning
            extractors; the model is moved to ``device`` and ``dtype``.
        **overrides: any :class:`~resnet_zoo.config.ResNetConfig` field (``global_pool``,
            ``drop_rate``, ``drop_path_rate``, ...); another name raises
            :class:`~resnet_zoo.errors.UnknownOptionError`, a ``TypeError`` as timm's.

    Returns:
        a :class:`ResNet` (or :class:`ResNetFeatures`) in training mode, like torchvision's
        builders: call ``.eval()`` before inference.
    """
    entry, tag = resolve_name(name)
    tag, pretrained, img_channels, overlay = _timm_keywords(
        entry.name, tag, pretrained, img_channels, in_chans, pretrained_cfg, pretrained_cfg_overlay, feature_cls
    )
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
        model = build(config)
        if tag is not None:  # random weights, with the tag's preprocessing, as timm gives them
            model.pretrained_info = PretrainedInfo(preprocessing=get_weights(entry.name, tag).preprocessing)
        return _finish(model, features_only, out_indices, overlay, device, dtype)

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
    return _finish(model, features_only, out_indices, overlay, device, dtype)


# torchvision's weights enum names -> the tags of the same weights (timm's names for them).
_TORCHVISION_TAGS = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k"}


def create_for_hub(
    name: str, pretrained: Any = False, *, weights: Any = None, progress: bool = True, **kwargs: Any
) -> ResNetBase:
    """What a torch.hub entry point builds: :func:`create`, taking torchvision's ``weights=``
    too (``"DEFAULT"`` the default weights, a tag such as ``"tv2_in1k"`` or torchvision's
    ``"IMAGENET1K_V2"``, a torchvision weights enum, or ``None``) and its ``progress=`` (the
    download bar, which resnet_zoo shows on stderr either way)."""
    if not isinstance(progress, bool):
        raise ConfigError(f"progress must be True or False, got {progress!r}")
    if weights is not None:
        if pretrained is not False:
            raise ConfigError(f"give pretrained={pretrained!r} or weights={weights!r}, not both")
        label = getattr(weights, "name", weights)  # a torchvision enum member has .name
        if not isinstance(label, str):
            raise ConfigError(f"weights takes 'DEFAULT', a weights tag or None (torchvision's), got {weights!r}")
        pretrained = True if label == "DEFAULT" else _TORCHVISION_TAGS.get(label, label)
    return create(name, pretrained=pretrained, **kwargs)


# timm's feature extractor classes that return the list of maps, as ResNetFeatures does.
_FEATURE_CLASSES = (None, "getter", "hook", "fx")
_OVERLAY_PREPROCESSING = ("mean", "std", "crop_pct", "interpolation", "input_size")


def _timm_keywords(
    arch: str, tag: str | None, pretrained: Any, img_channels: int | None, in_chans: int | None,
    pretrained_cfg: Any, pretrained_cfg_overlay: Any, feature_cls: Any,
) -> tuple[str | None, Any, int | None, dict[str, Any]]:  # fmt: skip
    """timm's keywords as ``timm.create_model`` takes them: the tag, the weights, the input
    channels, and the overlay's preprocessing changes."""
    if pretrained_cfg is not None:
        if not isinstance(pretrained_cfg, str) or (tag is not None and pretrained_cfg != tag):
            raise ConfigError(f"pretrained_cfg takes a weights tag of {arch} (as timm does), got {pretrained_cfg!r}")
        tag = pretrained_cfg
    overlay = _overlay(pretrained_cfg_overlay)
    if "source" in overlay and pretrained is not False and pretrained is not None:
        pretrained = overlay["source"]  # timm's pretrained_cfg_overlay=dict(file=...) loads that file
    if feature_cls not in _FEATURE_CLASSES:
        raise ConfigError(
            f"feature_cls must be one of {list(_FEATURE_CLASSES)} (each gives the list of maps), got {feature_cls!r}"
        )
    if in_chans is not None and img_channels is not None and img_channels != in_chans:
        raise ConfigError(f"in_chans={in_chans!r} and img_channels={img_channels!r} name the same field; give one")
    return tag, pretrained, (in_chans if in_chans is not None else img_channels), overlay


def _overlay(overlay: Any) -> dict[str, Any]:
    """timm's ``pretrained_cfg_overlay``: where the weights are (``source``) and preprocessing changes."""
    if overlay is None:
        return {}
    if not isinstance(overlay, dict):
        raise ConfigError(f"pretrained_cfg_overlay must be a dict, got {type(overlay).__name__}")
    known = ("file", "hf_hub_id", *_OVERLAY_PREPROCESSING)
    unknown = sorted(k for k in overlay if k not in known)
    if unknown:
        raise ConfigError(f"pretrained_cfg_overlay keys {unknown} are not taken; resnet_zoo takes {list(known)}")
    out: dict[str, Any] = {k: overlay[k] for k in _OVERLAY_PREPROCESSING if k in overlay}
    if "input_size" in out:  # timm's (C, H, W)
        size = out["input_size"]
        out["input_size"] = size[-1] if isinstance(size, (tuple, list)) and size else size
    if "file" in overlay:
        out["source"] = os.fspath(overlay["file"])
    elif "hf_hub_id" in overlay:
        out["source"] = f"hf-hub:{overlay['hf_hub_id']}"
    return out


def _finish(
    model: ResNetBase, features_only: bool, out_indices: Sequence[int] | int | None, overlay: dict[str, Any],
    device: Any, dtype: Any,
) -> ResNetBase:  # fmt: skip
    """The overlay's preprocessing, the move to ``device``/``dtype``, and the cut for ``features_only``."""
    changes = {k: v for k, v in overlay.items() if k != "source"}
    if changes:
        info = model.pretrained_info or PretrainedInfo()
        model.pretrained_info = dataclasses.replace(
            info, preprocessing=dataclasses.replace(model.pretrained_cfg.preprocessing, **changes)
        )
    if device is not None or dtype is not None:
        try:
            model = model.to(device=device, dtype=dtype)
        except (RuntimeError, TypeError, ValueError) as e:
            raise ConfigError(f"cannot move the model to device={device!r}, dtype={dtype!r}: {e}") from None
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
