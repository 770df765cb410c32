"""A module around a resnet_zoo model that reads the model's metadata through."""

from __future__ import annotations

from torch import nn

from ..config import ResNetConfig
from ..manifest import PretrainedInfo
from ..model import ResNetBase
from ..timm_api import FeatureInfoList, PretrainedCfg

__all__ = ["ModelView"]


class ModelView(nn.Module):
    """Base of the inference wrappers: their config, feature maps, registered name and weights
    info are the wrapped model's own (read through, never copied)."""

    def _wrapped(self) -> ResNetBase:
        raise NotImplementedError

    @property
    def config(self) -> ResNetConfig:
        return self._wrapped().config

    @property
    def full_config(self) -> ResNetConfig:
        return self._wrapped().full_config

    @property
    def feature_info(self) -> FeatureInfoList:
        return self._wrapped().feature_info

    @property
    def arch_name(self) -> str | None:
        return self._wrapped().arch_name

    @property
    def pretrained_info(self) -> PretrainedInfo | None:
        return self._wrapped().pretrained_info

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        return self._wrapped().pretrained_cfg

    default_cfg = pretrained_cfg
