"""resnet_zoo: the ResNets of He et al. 2016, from one faithful ResNetBase.

>>> import resnet_zoo
>>> model = resnet_zoo.create("resnet50")
"""

from ._version import __version__
from .config import ResNetConfig
from .detection import fpn_backbone
from .errors import (
    CheckpointError,
    ConfigError,
    DownloadError,
    InputError,
    IntegrityError,
    ResNetZooError,
    UnknownModelError,
    UnknownOptionError,
)
from .factory import create
from .inference import InferenceModel, extract_features, optimize_for_inference, predict
from .model import (
    BottleneckResidualBlock,
    FeatureInfo,
    ResidualBlock,
    ResNet,
    ResNetBase,
    ResNetFeatures,
    ShortcutProjection,
    ZeroPadShortcut,
)
from .pretrained.convert import convert_state_dict, detect_layout, export_state_dict
from .registry import get_config, list_models, register_model

__all__ = [
    "__version__",
    "BottleneckResidualBlock",
    "CheckpointError",
    "ConfigError",
    "DownloadError",
    "FeatureInfo",
    "InferenceModel",
    "InputError",
    "IntegrityError",
    "ResNet",
    "ResNetBase",
    "ResNetConfig",
    "ResNetFeatures",
    "ResNetZooError",
    "ResidualBlock",
    "ShortcutProjection",
    "UnknownModelError",
    "UnknownOptionError",
    "ZeroPadShortcut",
    "convert_state_dict",
    "create",
    "detect_layout",
    "export_state_dict",
    "extract_features",
    "fpn_backbone",
    "get_config",
    "list_models",
    "optimize_for_inference",
    "predict",
    "register_model",
]
