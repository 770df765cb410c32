"""The network, in one file: shortcuts, the two residual blocks, stages, the input checks,
ResNetBase (pooled features), ResNet (classifier, with timm's model API) and ResNetFeatures.

He et al. 2016: a stem conv, stages of residual blocks whose first block may halve the map
(and widen it), then global average pooling to a vector. One :class:`ResNetBase` expresses the
reference network (labml_nn.resnet), torchvision's ImageNet ResNets, wide ResNets, ResNeXt and
the paper's CIFAR ResNets; a :class:`~resnet_zoo.config.ResNetConfig` says which.

A block computes ``act(F(x) + shortcut(x))``. ``F`` always has more than one layer: with a
single layer the sum would be linear in ``x`` and the block would add no non-linearity.

Module and state-dict names are torchvision's and timm's: ``conv1``, ``bn1``, ``act1`` (``relu``
is torchvision's name for it), ``maxpool``, ``layer1`` ... ``layerN`` (one ``nn.Sequential`` of
blocks per stage), blocks with ``conv1``/``bn1``/... and the projection ``downsample.0``/``.1``,
and ``fc``. An ImageNet architecture's state dict is key for key torchvision's, so torchvision's
and timm's weights load with ``strict=True`` and their stage-name tools (``IntermediateLayerGetter``,
``create_feature_extractor``, ``_resnet_fpn_extractor``) work on the model itself. Files in the
labml reference's layout (one flat ``blocks`` sequence, also this project's own until it took torchvision's names) load
through :func:`~resnet_zoo.convert_state_dict`.
"""

import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import SHORTCUTS, ResNetConfig
from .errors import ConfigError, InputError
from .layers import checkpointed, drop_path, global_pool
from .manifest import PretrainedInfo
from .pretrained.fit import from_pretrained
from .pretrained.save import push_to_hub, save_pretrained
from .timm_api import FeatureInfo, FeatureInfoList, PretrainedCfg, resolve_out_indices
from .timm_api import group_matcher as match_groups
from .util.checks import check_positive_int

#: Makes a normalisation layer for a number of channels (torchvision's ``norm_layer``).
NormLayer = Callable[[int], nn.Module]

__all__ = [
    "ShortcutProjection", "ZeroPadShortcut", "ResidualBlock", "BottleneckResidualBlock", "make_shortcut", "make_stages",
    "check_image_batch", "is_tracing", "FeatureInfo", "ResNetBase", "ResNet", "ResNetFeatures",
]  # fmt: skip

# --- Shortcuts, blocks and stages -------------------------------------------------------------


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        check_positive_int(name, value)


class ShortcutProjection(nn.Sequential):
    """The projection shortcut ``W_s x``: a conv with the block's stride, then batch norm.

    ``kernel_size=1`` is the paper's option B; the labml reference's CIFAR ResNet-14 uses ``kernel_size=3``.
    A two-module ``nn.Sequential``, as torchvision's ``downsample``: its state-dict keys are
    ``0.weight`` (the conv) and ``1.*`` (the batch norm); ``.conv`` and ``.bn`` name them.
    """

    __jit_unused_properties__ = ["conv", "bn"]

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, *, kernel_size: int = 1, bias: bool = True,
        norm_layer: NormLayer | None = None,
    ) -> None:  # fmt: skip
        _check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride, kernel_size=kernel_size)
        super().__init__(
            # Same stride as F so that the two maps have the same size.
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias),
            # The paper puts batch norm after every convolution.
            (norm_layer or nn.BatchNorm2d)(out_channels),
        )

    @property
    def conv(self) -> nn.Conv2d:
        return cast(nn.Conv2d, self[0])

    @property
    def bn(self) -> nn.BatchNorm2d:
        return cast(nn.BatchNorm2d, self[1])


class ZeroPadShortcut(nn.Module):
    """The paper's option A: a strided identity whose extra channels are zeros (no parameters).

    The zeros are split evenly before and after the input channels, the layout of the widely
    used CIFAR ResNet checkpoints, so that their weights keep working.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride)
        if out_channels < in_channels:
            raise ConfigError(
                f"ZeroPadShortcut cannot reduce channels ({in_channels} -> {out_channels}); use ShortcutProjection"
            )
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, *, bias: bool, norm_layer: NormLayer | None = None
) -> nn.Module:
    """Identity where the shape is unchanged, otherwise the shortcut ``kind`` (see SHORTCUTS)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "projection":
        return ShortcutProjection(in_channels, out_channels, stride, bias=bias, norm_layer=norm_layer)
    if kind == "conv3x3":
        return ShortcutProjection(in_channels, out_channels, stride, kernel_size=3, bias=bias, norm_layer=norm_layer)
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    raise ConfigError(f"shortcut must be one of {list(SHORTCUTS)}, got {kind!r}")


class ResidualBlock(nn.Module):
    """Basic block: two 3x3 convs, each followed by batch norm, ReLU after the first and after the sum.

    The stride sits in the first conv, which also maps ``in_channels`` to ``out_channels``.
    ``first_dilation`` (default ``dilation``) dilates the first conv, ``dilation`` the second,
    as in timm's ``BasicBlock``; ``norm_layer`` makes the norms (default ``nn.BatchNorm2d``).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, *, bias: bool = True, shortcut: str = "projection",
        dilation: int = 1, first_dilation: int | None = None, norm_layer: NormLayer | None = None,
        drop_path: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.drop_path = drop_path  # stochastic depth of the residual branch (timm's rate)
        first = dilation if first_dilation is None else first_dilation
        _check_positive(
            in_channels=in_channels, out_channels=out_channels, stride=stride, dilation=dilation, first_dilation=first
        )
        norm = norm_layer or nn.BatchNorm2d
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=first, dilation=first, bias=bias)
        self.bn1 = norm(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=bias)
        self.bn2 = norm(out_channels)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, bias=bias, norm_layer=norm_layer)
        # ReLU after adding the shortcut.
        self.act2 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the branch's last BN scale so the block starts as (a projection of) identity."""
        nn.init.zeros_(cast(torch.Tensor, self.bn2.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = drop_path(out, self.drop_path, self.training)
        out += self.downsample(x)  # in place: out is this block's own fresh tensor
        return self.act2(out)


class BottleneckResidualBlock(nn.Module):
    """Bottleneck block: 1x1 down to ``bottleneck_channels``, 3x3, 1x1 up to ``out_channels``.

    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"; the original paper strided
    the first 1x1, which throws away 3/4 of the input before looking at it). ``groups > 1``
    makes the 3x3 a grouped conv (ResNeXt). The 3x3 is dilated by ``first_dilation`` (default
    ``dilation``): torchvision gives a stage's first block the dilation before the stage's.
    """

    def __init__(
        self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int, *, groups: int = 1,
        bias: bool = True, shortcut: str = "projection", dilation: int = 1, first_dilation: int | None = None,
        norm_layer: NormLayer | None = None, drop_path: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.drop_path = drop_path  # stochastic depth of the residual branch (timm's rate)
        d = dilation if first_dilation is None else first_dilation
        _check_positive(
            in_channels=in_channels, bottleneck_channels=bottleneck_channels, out_channels=out_channels,
            stride=stride, groups=groups, dilation=d,
        )  # fmt: skip
        if bottleneck_channels % groups:
            raise ConfigError(f"bottleneck_channels={bottleneck_channels} is not divisible by groups={groups}")
        norm = norm_layer or nn.BatchNorm2d
        self.conv1 = nn.Conv2d(in_channels, bottleneck_channels, 1, stride=1, bias=bias)
        self.bn1 = norm(bottleneck_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bottleneck_channels, bottleneck_channels, 3, stride=stride, padding=d, dilation=d, groups=groups, bias=bias
        )
        self.bn2 = norm(bottleneck_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(bottleneck_channels, out_channels, 1, stride=1, bias=bias)
        self.bn3 = norm(out_channels)
        self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride, bias=bias, norm_layer=norm_layer)
        self.act3 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        """Zero the branch's last BN scale so the block starts as (a projection of) identity."""
        nn.init.zeros_(cast(torch.Tensor, self.bn3.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = drop_path(out, self.drop_path, self.training)
        out += self.downsample(x)  # in place: out is this block's own fresh tensor
        return self.act3(out)


def make_stages(config: ResNetConfig, in_channels: int, norm_layer: NormLayer | None = None) -> list[nn.Sequential]:
    """One ``nn.Sequential`` of blocks per stage. Only the first block of a stage changes the
    map size and the channels (``config.stage_layout()``: strides, and dilations where a
    stride is replaced by one)."""
    stages: list[nn.Sequential] = []
    prev = in_channels
    layout = config.stage_layout()
    total, index = sum(config.n_blocks), 0
    for i, (n, channels) in enumerate(zip(config.n_blocks, config.n_channels)):
        blocks: list[nn.Module] = []
        first_stride, first_dilation, dilation = layout[i]
        for j in range(n):
            common: dict[str, Any] = dict(
                bias=config.conv_bias,
                shortcut=config.shortcut,
                dilation=dilation,
                first_dilation=first_dilation if j == 0 else dilation,
                norm_layer=norm_layer,
                # timm's linear rule: 0 for the first block, drop_path_rate for the last
                drop_path=config.drop_path_rate * index / max(total - 1, 1),
            )
            index += 1
            stride = first_stride if j == 0 else 1
            if config.bottlenecks is None:
                block: nn.Module = ResidualBlock(prev, channels, stride, **common)
            else:
                block = BottleneckResidualBlock(
                    prev, config.bottlenecks[i], channels, stride, groups=config.groups, **common
                )
            blocks.append(block)
            prev = channels
        stages.append(nn.Sequential(*blocks))
    return stages


# --- What a model checks of its input ------------------------------------------------------------


def is_tracing(x: object) -> bool:
    """Whether ``x`` is being traced rather than run: a checked shape would be a TracerWarning
    (jit.trace, the legacy ONNX export), a crash (an FX proxy) or a guard (dynamo, export)."""
    onnx = sys.modules.get("torch.onnx")  # loaded by an export; never imported here for a forward
    return (
        isinstance(x, torch.fx.Proxy)
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or (onnx is not None and onnx.is_in_onnx_export())
    )


def check_image_batch(x: torch.Tensor, img_channels: int) -> None:
    """:class:`InputError` saying what is wrong with ``x`` as a batch of ``img_channels``-channel
    images, and how to fix it."""
    if is_tracing(x):  # FX, jit.trace, torch.export, ONNX and torch.compile see shapes as graphs
        return
    if not isinstance(x, torch.Tensor):
        raise InputError(f"expected a torch.Tensor of shape [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise InputError(f"expected a 4-d input [batch, {img_channels}, height, width], got shape {list(x.shape)}")
    if x.shape[1] != img_channels:
        raise InputError(
            f"expected {img_channels} input channels, got shape {list(x.shape)}; "
            f"create the model with img_channels={x.shape[1]} or convert the images"
        )
    if not x.is_floating_point():
        raise InputError(
            f"expected a floating-point input, got dtype {x.dtype}; convert with x.float() (and normalise) first"
        )
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise InputError(f"input has an empty spatial size {list(x.shape)}: height and width must be >= 1")


class ResNetBase(nn.Module):
    """ResNet without its classifier: ``[B, img_channels, H, W] -> [B, n_channels[-1]]``.

    Args:
        n_blocks: blocks per feature-map size (stage).
        n_channels: output channels of each stage.
        bottlenecks: width of each stage's bottleneck 3x3 conv; ``None`` uses residual blocks.
        img_channels: channels of the input.
        first_kernel_size: kernel of the stem conv (stride ``stem_stride``, padding ``k // 2``).
        stage_strides, stem_channels, stem_stride, stem_act, stem_pool, conv_bias, groups,
            shortcut, zero_init_residual, replace_stride_with_dilation, global_pool, drop_rate,
            drop_path_rate: the keyword-only fields of :class:`ResNetConfig` (its comments say
            what each does; the defaults are the same).
        num_classes: must stay 0: ResNetBase has no head (:class:`ResNet` has).
        norm_layer: makes every norm layer from its channel count (torchvision's; default
            ``nn.BatchNorm2d``; detection passes ``torchvision.ops.FrozenBatchNorm2d``).
    """

    if TYPE_CHECKING:  # set in __init__ and by the loaders (declared once for the type checker)
        pretrained_info: PretrainedInfo | None

    # TorchScript compiles forward and what it calls; the metadata is Python-side only.
    __jit_ignored_attributes__ = ["config", "feature_info", "pretrained_info", "arch_name"]
    __jit_unused_properties__ = ["pretrained_cfg", "default_cfg", "full_feature_reduction", "relu", "in_chans"]

    @property
    def pretrained_cfg(self) -> PretrainedCfg:
        """timm's ``pretrained_cfg`` mapping (never None; see :class:`~resnet_zoo.timm_api.PretrainedCfg`)."""
        return PretrainedCfg(self.pretrained_info, self.config, self.arch_name, self.full_feature_reduction)

    @pretrained_cfg.setter
    def pretrained_cfg(self, value: PretrainedInfo | PretrainedCfg | None) -> None:
        if isinstance(value, PretrainedCfg):
            value = value.info
        if value is not None and not isinstance(value, PretrainedInfo):
            raise ConfigError(
                f"pretrained_cfg takes a resnet_zoo.manifest.PretrainedInfo (or None), got {type(value).__name__}"
            )
        self.pretrained_info = value

    default_cfg = pretrained_cfg  # timm's older name for the same mapping

    @property
    def full_feature_reduction(self) -> int:
        """Input size / size of the whole network's last map (32 for the ImageNet ResNets)."""
        c = self.config
        r = c.stem_stride * (2 if c.stem_pool else 1)
        for stride, _, _ in c.stage_layout():
            r *= stride
        return r

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them
        (timm's name): the same outputs, gradients and batch-norm statistics, less memory."""
        self.grad_checkpointing = bool(enable)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (stem, then each block, or each stage with ``coarse``), for
        layer-wise learning-rate decay (``timm.optim.create_optimizer_v2(m, layer_decay=...)``)."""
        return match_groups(coarse)

    def __init__(
        self, n_blocks: Sequence[int], n_channels: Sequence[int], bottlenecks: Sequence[int] | None = None,
        img_channels: int = 3, first_kernel_size: int = 7, *, stage_strides: Sequence[int] | None = None,
        stem_channels: int | None = None, stem_stride: int = 2, stem_act: bool = False, stem_pool: bool = False,
        conv_bias: bool = True, groups: int = 1, shortcut: str = "projection", zero_init_residual: bool = False,
        num_classes: int = 0, replace_stride_with_dilation: Sequence[bool] | None = None, global_pool: str = "avg",
        drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm_layer: NormLayer | None = None,
    ) -> None:  # fmt: skip
        if type(self) is ResNetBase and num_classes:
            raise ConfigError(
                f"ResNetBase has no classifier, so num_classes={num_classes!r} cannot apply: use ResNet for a head"
            )
        super().__init__()
        # As given: the config validates every value and turns lists into tuples.
        fields: dict[str, Any] = dict(
            n_blocks=n_blocks, n_channels=n_channels, bottlenecks=bottlenecks, img_channels=img_channels,
            first_kernel_size=first_kernel_size, stage_strides=stage_strides, stem_channels=stem_channels,
            stem_stride=stem_stride, stem_act=stem_act, stem_pool=stem_pool, conv_bias=conv_bias, groups=groups,
            shortcut=shortcut, num_classes=num_classes, zero_init_residual=zero_init_residual,
            replace_stride_with_dilation=replace_stride_with_dilation, global_pool=global_pool, drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )  # fmt: skip
        self._build(ResNetConfig(**fields), norm_layer)
        self.init_weights()

    def _build(self, config: ResNetConfig, norm_layer: NormLayer | None = None) -> None:
        """Every module from ``config``, which the model keeps as ``self.config``: the stem, the
        stages and the description of their maps (``feature_info``). Nothing is initialised
        here: the caller runs :meth:`init_weights` once the head is built too."""
        if norm_layer is not None and not callable(norm_layer):
            raise ConfigError(
                f"norm_layer must make a norm layer from a channel count (nn.BatchNorm2d, "
                f"torchvision.ops.FrozenBatchNorm2d, ...), got {norm_layer!r}"
            )
        self.config = config
        k = config.first_kernel_size

        # Stem: maps img_channels to the first stage's input channels.
        stem_channels = config.stem_out_channels
        conv: dict[str, Any] = dict(stride=config.stem_stride, padding=k // 2, bias=config.conv_bias)
        self.conv1 = nn.Conv2d(config.img_channels, stem_channels, k, **conv)
        self.bn1 = (norm_layer or nn.BatchNorm2d)(stem_channels)
        self.act1 = nn.ReLU(inplace=True) if config.stem_act else nn.Identity()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if config.stem_pool else nn.Identity()
        # Map 0 is the stem's activation, before the max-pool (timm's: stride 2 on ImageNet nets).
        reduction = config.stem_stride
        feature_info = FeatureInfoList([FeatureInfo(stem_channels, reduction, "act1")])
        reduction *= 2 if config.stem_pool else 1

        # Stages: layer1 ... layerN, one nn.Sequential of blocks each (torchvision's names).
        for i, (stage, (stride, _, _)) in enumerate(
            zip(make_stages(config, stem_channels, norm_layer), config.stage_layout())
        ):
            self.add_module(f"layer{i + 1}", stage)
            reduction *= stride
            feature_info.append(FeatureInfo(config.n_channels[i], reduction, f"layer{i + 1}"))
        self.feature_info: FeatureInfoList = feature_info
        self.num_features = config.num_features
        # timm's head: the pooling kind, the dropout before the classifier, the head's input width.
        self.pool_type = config.global_pool
        self.drop_rate = config.drop_rate
        self.head_hidden_size = config.head_features
        # torchvision's ResNet leaves its last stage's channels here; its FPN helper reads it.
        self.inplanes = config.num_features
        self.grad_checkpointing = False
        # The registered name this model was built as (create() and the loaders give it), and
        # where its weights came from with their preprocessing and class names (None: random
        # init); pretrained_cfg is timm's view of both. Inference wrappers delegate to them.
        self.arch_name: str | None = None
        self.pretrained_info = None

    @classmethod
    def from_config(
        cls, config: ResNetConfig, *, arch_name: str | None = None, norm_layer: NormLayer | None = None
    ) -> "ResNetBase":
        """Build from a config, which the model keeps as it is (for ResNetBase without its head,
        ``num_classes=0``). ``norm_layer``: torchvision's (default ``nn.BatchNorm2d``), e.g.
        ``torchvision.ops.FrozenBatchNorm2d``; a build choice, not part of the config."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model._build(config.replace(num_classes=0) if cls is ResNetBase else config, norm_layer)
        model.init_weights()
        model.arch_name = arch_name
        return model

    def init_weights(self) -> None:
        """torchvision's initialisation, in its order: He (kaiming) normal for every conv, BN
        weight 1 / bias 0, then the optional zero-init residual; the head keeps PyTorch's default
        init. With the same seed the weights are torchvision's builder's, draw for draw."""
        if self.conv1.weight.is_meta:
            return  # built to receive loaded weights: there is nothing to initialise
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # fan_out keeps the backward signal's variance through ReLU (He et al. 2015).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for stage in self.stages():
                for block in stage:
                    cast(ResidualBlock | BottleneckResidualBlock, block).zero_init_last()

    @property
    def in_chans(self) -> int:
        """timm's name for the input channels (``config.img_channels``)."""
        return self.config.img_channels

    @property
    def relu(self) -> nn.Module:
        """torchvision's name for the stem activation :attr:`act1` (the same module)."""
        return self.act1

    @torch.jit.unused
    def stages(self) -> list[nn.Sequential]:
        """``layer1`` ... ``layerN``, in order."""
        return [cast(nn.Sequential, m) for name, m in self.named_children() if name.startswith("layer")]

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.config.img_channels)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, img_channels, H, W] -> [B, stem_channels, H / r, W / r]``: the stem with its
        max-pool, the input of ``layer1``."""
        return self.maxpool(self.act1(self.bn1(self.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled last map (timm's ``forward_features``):
        ``[B, img_channels, H, W] -> [B, n_channels[-1], h, w]``."""
        if not torch.jit.is_scripting():
            self._check_input(x)
            if self.grad_checkpointing:
                return self._checkpointed_features(x)
        x = self.forward_stem(x)
        for name, stage in self.named_children():  # TorchScript unrolls this loop
            if name.startswith("layer"):
                x = stage(x)
        return x

    @torch.jit.unused
    def _checkpointed_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages():
            for block in stage:
                x = checkpointed(block, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last map to the pooled features ``[B, head_hidden_size]`` (global average
        pooling unless ``global_pool`` says otherwise); a :class:`ResNet` applies its head unless
        ``pre_logits``."""
        return global_pool(x, self.pool_type)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, n_channels[-1]]``, the head skipped (the labml reference's ResNetBase output)."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features: ``[B, img_channels, H, W] -> [B, n_channels[-1]]``.

        An empty batch (B = 0) gives an empty result. NaN or Inf in an input image propagates
        to that image's output only (in eval mode; in training mode batch statistics mix the
        images of a batch); inputs are not scanned for them, which would cost a pass over the data.
        """
        return self.forward_pooled(x)

    @torch.jit.unused
    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] | int | None = None, norm: bool = False,
        stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:  # fmt: skip
        """timm's: the maps described by :attr:`feature_info` (the stem's activation, then each
        stage's) and the last map, as ``(final, maps)``; only the maps with ``intermediates_only``.

        ``indices`` picks maps (timm's: None all, an int the last n, negative indices count from
        the end). ``stop_early`` stops after the last map picked (``final`` is then that map).
        ``norm`` has nothing to apply (a ResNet has no final norm); ``output_fmt`` is "NCHW".
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW' (a ResNet's maps are NCHW), got {output_fmt!r}")
        wanted = resolve_out_indices(indices, len(self.feature_info))
        final, maps = self._intermediates(x, wanted, stop_early or intermediates_only)
        return maps if intermediates_only else (final, maps)

    @torch.jit.unused
    def prune_intermediate_layers(
        self, indices: Sequence[int] | int = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """timm's: drop the stages after the last map ``indices`` picks (they become empty
        ``nn.Sequential``), and the head (``prune_head``, or where stages were dropped, as the
        head was sized for the last one). Returns the picked indices."""
        wanted = resolve_out_indices(indices, len(self.feature_info))
        last, names = max(wanted), [name for name, _ in self.named_children() if name.startswith("layer")]
        for name in names[last:]:
            setattr(self, name, nn.Sequential())
        if last == 0:
            self.maxpool = nn.Identity()
        if last < len(names):
            self.num_features = self.head_hidden_size = self.feature_info[last].channels
        if prune_head or last < len(names):
            self._drop_head()
        return list(wanted)

    def _drop_head(self) -> None:
        self.config = self.config.replace(global_pool="")
        self.pool_type = ""

    @torch.jit.unused
    def _intermediates(
        self, x: torch.Tensor, wanted: Sequence[int], stop_early: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check_input(x)
        outputs: dict[int, torch.Tensor] = {}
        x = self.act1(self.bn1(self.conv1(x)))
        outputs[0] = x
        stages = self.stages()[: max(wanted)] if stop_early else self.stages()
        if stages:
            x = self.maxpool(x)
        for i, stage in enumerate(stages, start=1):
            if self.grad_checkpointing:
                for block in stage:
                    x = checkpointed(block, x)
            else:
                x = stage(x)
            outputs[i] = x
        return x, [outputs[i] for i in wanted]

    def save_pretrained(
        self, save_directory: str | os.PathLike, *, push_to_hub: bool = False, repo_id: str | None = None,
        layout: str = "resnet_zoo", **push_kwargs: Any,
    ) -> str | None:  # fmt: skip
        """Write ``config.json`` (the full config), ``model.safetensors`` and a model card
        (``README.md``) to ``save_directory``; optionally push them to the Hub as ``repo_id``.

        ``layout="timm"`` writes timm's config.json and keys instead, for the ResNets timm
        builds: ``timm.create_model("local-dir:<save_directory>", pretrained=True)`` loads it
        (and resnet_zoo does too, with ``create(arch, pretrained=<save_directory>/model.safetensors)``).
        """
        return save_pretrained(
            self, save_directory, push_to_hub=push_to_hub, repo_id=repo_id, layout=layout, **push_kwargs
        )

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload config.json + model.safetensors + model card to the Hub repo ``repo_id`` in one
        commit, and return its hash (``layout="timm"``: in timm's format, for
        ``timm.create_model("hf-hub:...")``; ``private``, ``token``, ``revision``, ``commit_message``)."""
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls, directory_or_repo: str | os.PathLike, *, revision: str | None = None,
        cache_dir: str | os.PathLike | None = None, force_download: bool = False, token: str | bool | None = None,
        local_files_only: bool = False, features_only: bool = False, out_indices: Sequence[int] | int | None = None,
        **changes: Any,
    ) -> "ResNetBase":  # fmt: skip
        """Load a ``save_pretrained`` directory or a Hub repo (``owner/repo``) written by it,
        as this class (a :class:`ResNetFeatures` with ``features_only``).

        ``revision``, ``cache_dir``, ``force_download``, ``token`` and ``local_files_only`` are
        huggingface_hub's download arguments, passed on. ``changes``: any config field
        (``num_classes=`` re-initialises the head).
        """
        if cls is ResNetBase and changes.get("num_classes"):
            raise ConfigError(
                f"ResNetBase has no classifier, so num_classes={changes['num_classes']!r} cannot "
                "apply: use ResNet.from_pretrained for a head"
            )
        if out_indices is not None and not features_only and cls is not ResNetFeatures:
            raise ConfigError("out_indices only applies with features_only=True")
        # The whole network is built and loaded strictly; then cut to what this class holds.
        model = from_pretrained(
            ResNet.from_config,
            directory_or_repo,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
            **changes,
        )
        if features_only or cls is ResNetFeatures:
            return ResNetFeatures.from_model(model, out_indices)
        return ResNetBase.trunk_of(model) if cls is ResNetBase else model

    @classmethod
    def trunk_of(cls, model: "ResNetBase") -> "ResNetBase":
        """``model`` without its head, as a :class:`ResNetBase` sharing its modules."""
        trunk = cls.__new__(cls)
        nn.Module.__init__(trunk)
        trunk._share(model, len(model.stages()))
        trunk.feature_info = model.feature_info
        return trunk

    def _share(self, model: "ResNetBase", n_stages: int) -> None:
        """Take ``model``'s stem and first ``n_stages`` stages, its config without the head, and
        its metadata; the weights' class names and reported accuracy belong to the head, and
        are dropped with it."""
        self.config = model.config.replace(num_classes=0)
        self.conv1, self.bn1, self.act1, self.maxpool = model.conv1, model.bn1, model.act1, model.maxpool
        for i, stage in enumerate(model.stages()[:n_stages]):
            self.add_module(f"layer{i + 1}", stage)
        self.num_features = model.num_features
        self.pool_type, self.drop_rate, self.head_hidden_size = model.pool_type, model.drop_rate, model.head_hidden_size
        self.inplanes = model.inplanes
        self.grad_checkpointing = model.grad_checkpointing
        self.arch_name = model.arch_name
        info = model.pretrained_info
        if info is not None and (info.labels or info.top1 is not None):
            info = info.for_new_head()
        self.pretrained_info = info
        self.train(model.training)


class ResNet(ResNetBase):
    """The classifier: :class:`ResNetBase` plus a linear head ``fc``.

    ``forward`` returns logits ``[B, num_classes]``; with ``num_classes=0`` there is no head and
    it returns the pooled features ``[B, n_channels[-1]]``.
    """

    def __init__(
        self, n_blocks: Sequence[int], n_channels: Sequence[int], bottlenecks: Sequence[int] | None = None,
        img_channels: int = 3, first_kernel_size: int = 7, *, stage_strides: Sequence[int] | None = None,
        stem_channels: int | None = None, stem_stride: int = 2, stem_act: bool = False, stem_pool: bool = False,
        conv_bias: bool = True, groups: int = 1, shortcut: str = "projection", zero_init_residual: bool = False,
        num_classes: int = 1000, replace_stride_with_dilation: Sequence[bool] | None = None, global_pool: str = "avg",
        drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm_layer: NormLayer | None = None,
    ) -> None:  # fmt: skip
        """:class:`ResNetBase`'s arguments, and ``num_classes`` (0: no head)."""
        super().__init__(
            n_blocks, n_channels, bottlenecks, img_channels, first_kernel_size, stage_strides=stage_strides,
            stem_channels=stem_channels, stem_stride=stem_stride, stem_act=stem_act, stem_pool=stem_pool,
            conv_bias=conv_bias, groups=groups, shortcut=shortcut, zero_init_residual=zero_init_residual,
            num_classes=num_classes, replace_stride_with_dilation=replace_stride_with_dilation,
            global_pool=global_pool, drop_rate=drop_rate, drop_path_rate=drop_path_rate, norm_layer=norm_layer,
        )  # fmt: skip

    def _build(self, config: ResNetConfig, norm_layer: NormLayer | None = None) -> None:
        super()._build(config, norm_layer)
        self.num_classes = config.num_classes
        self.fc: nn.Module = self._make_head(self.num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0 = no head),
        in the model's train/eval mode; ``global_pool`` (timm's kinds, "" for the unpooled map)
        replaces the pooling, which is kept where None.

        The weights' class names and reported accuracy belong to the old head: they are dropped
        from ``pretrained_cfg``, which records what the weights were fine-tuned from instead."""
        pool = self.pool_type if global_pool is None else global_pool
        self.config = self.config.replace(num_classes=num_classes, global_pool=pool)  # validates both
        self.num_classes, self.pool_type = num_classes, pool
        self.head_hidden_size = self.num_features * (2 if pool == "catavgmax" else 1)  # after a prune too
        ref = next(self.parameters())
        self.fc = self._make_head(num_classes).to(device=ref.device, dtype=ref.dtype)
        self.fc.train(self.training)
        if self.pretrained_info is not None:
            self.pretrained_info = self.pretrained_info.for_new_head()

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def _drop_head(self) -> None:
        self.reset_classifier(0, "")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last map to logits ``[B, num_classes]``; ``pre_logits=True`` stops at the pooled
        features ``[B, head_hidden_size]`` (the dropout of ``drop_rate`` comes before the head)."""
        x = global_pool(x, self.pool_type)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, img_channels, H, W] -> [B, num_classes]`` logits (features if num_classes=0)."""
        return self.forward_head(self.forward_features(x))


class ResNetFeatures(ResNetBase):
    """A feature extractor: ``forward`` returns the maps chosen by ``out_indices`` as a list.

    Cut from a whole network (timm's order: build, load, then cut): the stages after the last
    chosen map and the head are dropped. ``config`` stays the whole network's (without its
    head); ``feature_info`` lists only the chosen maps; module and parameter names are those of
    :class:`ResNetBase`.
    """

    def __init__(
        self, config: ResNetConfig, out_indices: Sequence[int] | int | None = None, *, arch_name: str | None = None
    ) -> None:
        nn.Module.__init__(self)
        self._cut(ResNetBase.from_config(config, arch_name=arch_name), out_indices)

    @classmethod
    def from_model(cls, model: "ResNetBase", out_indices: Sequence[int] | int | None = None) -> "ResNetFeatures":
        """The maps ``out_indices`` of ``model`` (a whole network, loaded), sharing its modules."""
        features = cls.__new__(cls)
        nn.Module.__init__(features)
        features._cut(model, out_indices)
        return features

    def _cut(self, model: "ResNetBase", out_indices: Sequence[int] | int | None) -> None:
        resolved = resolve_out_indices(out_indices, len(model.feature_info))
        self._share(model, max(resolved))  # feature map i > 0 is the output of layer{i}
        self.feature_info = FeatureInfoList(model.feature_info[i] for i in resolved)
        self.out_indices: list[int] = list(resolved)

    def save_pretrained(self, *args: Any, **kwargs: Any) -> str | None:
        raise ConfigError("save_pretrained saves whole models; save the model before features_only")

    def push_to_hub(self, *args: Any, **kwargs: Any) -> str:
        raise ConfigError("push_to_hub uploads whole models; upload the model before features_only")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """``[B, img_channels, H, W] ->`` one ``[B, C_i, H / r_i, W / r_i]`` map per out index."""
        if not torch.jit.is_scripting():
            return self._intermediates(x, self.out_indices)[1]
        maps: list[torch.Tensor] = []  # the same walk, for TorchScript (no checks, no checkpointing)
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in self.out_indices:
            maps.append(x)
        x = self.maxpool(x)
        i = 1
        for name, stage in self.named_children():  # unrolled; only the kept stages are children
            if name.startswith("layer"):
                x = stage(x)
                if i in self.out_indices:
                    maps.append(x)
                i += 1
        return maps
