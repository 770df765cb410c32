"""create(): name -> config -> module (-> weights) -> features."""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch import nn

from .errors import ConfigError
from .manifest import get_weights
from .model import ResNet, ResNetBase, ResNetFeatures
from .registry import get_entry, split_name

__all__ = ["create"]


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
    **overrides: Any,
) -> nn.Module:
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
        **overrides: any :class:`~resnet_zoo.config.ResNetConfig` field; a name that is not a
            field raises :class:`~resnet_zoo.errors.ConfigError`.

    Returns:
        a :class:`ResNet` (or :class:`ResNetFeatures`) in training mode, like torchvision's
        builders: call ``.eval()`` before inference.
    """
    entry = get_entry(name)
    _, tag = split_name(name)
    changes = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if img_channels is not None:
        changes["img_channels"] = img_channels
    config = entry.config.replace(**changes)  # validates every override, weights or not
    if out_indices is not None and not features_only:
        raise ConfigError("out_indices only applies with features_only=True")
    if tag is not None:
        get_weights(entry.name, tag)  # an unknown tag fails even without weights
        if isinstance(pretrained, str) and pretrained != tag:
            raise ConfigError(
                f"{name!r} names the tag {tag!r} but pretrained={pretrained!r}; give one of them"
            )
    if pretrained is not False and pretrained is not None:
        from .pretrained import build_pretrained  # weights code is only imported when used

        return build_pretrained(
            entry, tag, changes, pretrained, features_only=features_only,
            out_indices=out_indices, cache_dir=cache_dir, revision=revision,
        )
    model: ResNetBase = ResNetFeatures(config, out_indices) if features_only else ResNet.from_config(config)
    model.arch_name = entry.name
    return model
