"""Backbones for torchvision's detection and segmentation models.

:func:`fpn_backbone` is torchvision's ``resnet_fpn_backbone`` for any resnet_zoo model: a
``BackboneWithFPN`` (``out_channels``, and an ``OrderedDict`` of maps per call) that
``FasterRCNN``, ``MaskRCNN``, ``RetinaNet`` and ``KeypointRCNN`` take. A resnet_zoo model has
torchvision's ResNet names (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``... and
``inplanes``), so torchvision's own helpers (``IntermediateLayerGetter``, ``BackboneWithFPN``,
``_resnet_fpn_extractor``) work on it too; this one also takes any number of stages and a
name. torchvision is needed here only: ``pip install torchvision``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from .errors import ConfigError, ResNetZooError
from .factory import create
from .model import ResNetBase
from .util.checks import check_int, is_int

__all__ = ["fpn_backbone", "freeze_batch_norm"]


def _torchvision_ops() -> Any:
    try:
        import torchvision.ops
        from torchvision.models.detection.backbone_utils import BackboneWithFPN
    except ImportError:
        raise ResNetZooError("detection backbones build on torchvision: pip install torchvision") from None
    return torchvision.ops, BackboneWithFPN


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` under ``module`` by torchvision's ``FrozenBatchNorm2d``
    holding the same statistics and affine parameters (in place; returns ``module``)."""
    ops, _ = _torchvision_ops()
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen.to(child.weight.device))
        else:
            freeze_batch_norm(child)
    return module


def fpn_backbone(
    name: str | ResNetBase,
    *,
    pretrained: Any = False,
    trainable_layers: int = 3,
    returned_layers: Sequence[int] | None = None,
    extra_blocks: nn.Module | None = None,
    frozen_batch_norm: bool = True,
    out_channels: int = 256,
    **create_kwargs: Any,
) -> nn.Module:
    """torchvision's ``resnet_fpn_backbone`` over a resnet_zoo model.

    Args:
        name: a registered name (``"resnet50"``, ``"resnet50.tv_in1k"``...) or a built model.
        pretrained: as for :func:`resnet_zoo.create`.
        trainable_layers: how many stages, counted from the last, train (the stem counts as
            one more; torchvision's default 3). The rest are frozen (``requires_grad=False``).
        returned_layers: the stages (1-based) whose maps feed the FPN; default all of them.
        extra_blocks: torchvision's extra FPN block; default ``LastLevelMaxPool()``.
        frozen_batch_norm: batch norm as torchvision's ``FrozenBatchNorm2d`` (its default for
            detection, where batches are small); ``False`` keeps trainable batch norm.
        out_channels: channels of every FPN output.

    Returns:
        torchvision's ``BackboneWithFPN``: ``out_channels``, and per call an ``OrderedDict``
        ``{"0": ..., "1": ..., "pool": ...}`` of maps, as ``resnet_fpn_backbone`` gives.
    """
    ops, BackboneWithFPN = _torchvision_ops()
    if isinstance(name, ResNetBase):
        if pretrained is not False or create_kwargs:
            raise ConfigError("pass pretrained= and other create() arguments with a name, not a built model")
        model = name
    else:
        model = create(name, pretrained=pretrained, num_classes=0, **create_kwargs)
    stages = model
    n = len(model.stages())
    check_int("trainable_layers", trainable_layers, low=0, high=n + 1)
    check_int("out_channels", out_channels, low=1)
    if returned_layers is None:
        returned_layers = list(range(1, n + 1))
    returned = list(returned_layers)
    if not returned or any(not is_int(i, 1, n) for i in returned) or len(set(returned)) != len(returned):
        raise ConfigError(f"returned_layers must be distinct stages from 1 to {n}, got {returned_layers!r}")
    if frozen_batch_norm:
        freeze_batch_norm(stages)
    trainable = [f"layer{i}" for i in range(n, 0, -1)][:trainable_layers]
    if trainable_layers == n + 1:
        trainable += ["conv1", "bn1"]
    for pname, param in stages.named_parameters():
        if not any(pname.startswith(prefix + ".") for prefix in trainable):
            param.requires_grad_(False)
    if extra_blocks is None:
        extra_blocks = ops.feature_pyramid_network.LastLevelMaxPool()
    return_layers = OrderedDict((f"layer{k}", str(v)) for v, k in enumerate(returned))
    in_channels = [model.feature_info[k].channels for k in returned]
    return BackboneWithFPN(stages, return_layers, in_channels, out_channels, extra_blocks=extra_blocks)
