"""create(): name -> config -> module (-> weights) -> features."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from .model import ResNet, ResNetFeatures
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
    **overrides: Any,
) -> nn.Module:
    """Build a registered ResNet by name.

    Args:
        name: a registered architecture (``"resnet50"``) or one with a weights tag
            (``"resnet50.tv_in1k"``).
        pretrained: ``False``, ``True`` (the default tag), a tag, ``"hf-hub:owner/repo[@rev]"``,
            a local ``.safetensors`` file or a ``save_pretrained`` directory.
        num_classes: classes of the head (0 = no head); default: the architecture's.
        img_channels: input channels; default: the architecture's.
        features_only: return a :class:`ResNetFeatures` whose forward gives per-stage maps.
        out_indices: which maps (timm's semantics); only with ``features_only=True``.
        **overrides: any :class:`~resnet_zoo.config.ResNetConfig` field; a name that is not a
            field raises :class:`~resnet_zoo.errors.ConfigError`.

    Returns:
        a :class:`ResNet` (or :class:`ResNetFeatures`) in training mode, like torchvision's builders.
    """
    from .errors import ConfigError

    entry = get_entry(name)
    _, tag = split_name(name)
    changes = dict(overrides)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if img_channels is not None:
        changes["img_channels"] = img_channels
    config = entry.config.replace(**changes)
    if out_indices is not None and not features_only:
        raise ConfigError("out_indices only applies with features_only=True")
    if pretrained is not False and pretrained is not None:
        from .errors import ResNetZooError

        raise ResNetZooError(
            f"no pretrained weights are published for {name!r} yet; use pretrained=False"
        )
    if features_only:
        return ResNetFeatures(config, out_indices)
    return ResNet.from_config(config)
