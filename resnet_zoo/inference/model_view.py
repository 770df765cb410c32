"""A module around a resnet_zoo model that reads the model's metadata through."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..config import ResNetConfig
from ..errors import ConfigError
from ..manifest import PretrainedInfo
from ..model import ResNetBase
from ..timm_api import FeatureInfoList, PretrainedCfg

__all__ = ["ModelView", "Model", "unwrap", "compute_of"]


class ModelView(nn.Module):
    """Base of the inference wrappers: their config, feature maps, registered name and weights
    info are the wrapped model's own (read through, never copied).

    Public attributes: ``model`` (what it wraps: a resnet_zoo model or another view),
    ``backend`` (``"eager"``, ``"torch"``, ``"onnxruntime"``, ``"openvino"``), ``dtype`` (the
    compute dtype, or ``"int8"``) and ``device`` (where it computes)."""

    model: ResNetBase | ModelView
    backend: str
    dtype: Any

    if TYPE_CHECKING:  # each view gives its pooled features (declared for the type checker)

        def forward_pooled(self, x: torch.Tensor) -> torch.Tensor: ...

    def __init__(self, model: ResNetBase | ModelView, *, backend: str, dtype: Any, submodule: bool = True) -> None:
        super().__init__()
        if submodule:
            self.model = model
        else:  # the weights live elsewhere (a runtime): the model gives metadata and input checks only
            self.__dict__["model"] = model
        self.backend = backend
        self.dtype = dtype

    @property
    def device(self) -> torch.device:
        first = next(iter(unwrap(self).parameters()), None)
        return first.device if first is not None and self.backend in ("eager", "torch") else torch.device("cpu")

    @property
    def config(self) -> ResNetConfig:
        return unwrap(self).config

    @property
    def feature_info(self) -> FeatureInfoList:
        return unwrap(self).feature_info

    @property
    def arch_name(self) -> str | None:
        return unwrap(self).arch_name

    @property
    def pretrained_info(self) -> PretrainedInfo | None:
        return unwrap(self).pretrained_info

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        return unwrap(self).pretrained_cfg

    default_cfg = pretrained_cfg


def unwrap(model: nn.Module) -> ResNetBase:
    """The resnet_zoo model under any number of :class:`ModelView` s."""
    inner = model
    while isinstance(inner, ModelView):
        inner = inner.model
    if not isinstance(inner, ResNetBase):
        raise ConfigError(f"expected a resnet_zoo model (or a view of one), got {type(inner).__name__}")
    return inner


def compute_of(model: Model) -> tuple[str, Any, torch.device]:
    """``(backend, dtype, device)`` of any resnet_zoo model: a view says its own; the eager
    model computes in its parameters' dtype on their device."""
    if isinstance(model, ModelView):
        return model.backend, model.dtype, model.device
    first = next(iter(unwrap(model).parameters()), None)
    if first is None:
        return "eager", torch.float32, torch.device("cpu")
    return "eager", first.dtype, first.device


Model = ResNetBase | ModelView  # what inference and features take: a resnet_zoo model or a view of one
