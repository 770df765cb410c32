"""ResNetBase (pooled features), ResNet (classifier) and the per-stage feature API.

He et al. 2016: a stem conv, stages of residual blocks whose first block may halve the map
(and widen it), then global average pooling to a vector. One :class:`ResNetBase` expresses the
reference network (labml_nn.resnet), torchvision's ImageNet ResNets, wide ResNets, ResNeXt and the paper's
CIFAR ResNets; a :class:`~resnet_zoo.config.ResNetConfig` says which.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Sequence, cast

import torch
from torch import nn

from .blocks import BottleneckResidualBlock, ResidualBlock, checkpointed, make_stages
from .config import ResNetConfig
from .errors import ConfigError
from .input_checks import check_image_batch
from .manifest import PretrainedInfo
from .pretrained.fit import from_pretrained
from .pretrained.save import push_to_hub, save_pretrained
from .timm_api import FeatureInfo, FeatureInfoList, TimmModelApi, resolve_out_indices

__all__ = ["FeatureInfo", "ResNetBase", "ResNet", "ResNetFeatures"]


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def _layout_kwargs(config: ResNetConfig) -> dict[str, Any]:
    return {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("n_blocks", "n_channels", "bottlenecks", "img_channels", "first_kernel_size")
    }


class ResNetBase(TimmModelApi, nn.Module):
    """ResNet without its classifier: ``[B, img_channels, H, W] -> [B, n_channels[-1]]``.

    Args:
        n_blocks: blocks per feature-map size (stage).
        n_channels: output channels of each stage.
        bottlenecks: width of each stage's bottleneck 3x3 conv; ``None`` uses residual blocks.
        img_channels: channels of the input.
        first_kernel_size: kernel of the stem conv (stride ``stem_stride``, padding ``k // 2``).
        **layout: keyword-only fields of :class:`ResNetConfig` (``stage_strides``,
            ``stem_channels``, ``stem_stride``, ``stem_act``, ``stem_pool``, ``conv_bias``,
            ``groups``, ``shortcut``, ``zero_init_residual``).
    """

    def __init__(
        self,
        n_blocks: Sequence[int],
        n_channels: Sequence[int],
        bottlenecks: Sequence[int] | None = None,
        img_channels: int = 3,
        first_kernel_size: int = 7,
        **layout: Any,
    ) -> None:
        super().__init__()
        layout.setdefault("num_classes", 0)
        if type(self) is ResNetBase and layout["num_classes"]:
            raise ConfigError(
                f"ResNetBase has no classifier, so num_classes={layout['num_classes']!r} "
                "cannot apply: use ResNet for a head"
            )
        probe = ResNetConfig(n_blocks=(1,), n_channels=(1,))
        config = probe.replace(
            n_blocks=n_blocks,
            n_channels=n_channels,
            bottlenecks=bottlenecks,
            img_channels=img_channels,
            first_kernel_size=first_kernel_size,
            **layout,
        )
        self.config = config
        k = config.first_kernel_size

        # Stem: maps img_channels to the first stage's input channels.
        stem_channels = config.stem_out_channels
        conv: dict[str, Any] = dict(stride=config.stem_stride, padding=k // 2, bias=config.conv_bias)
        self.conv = nn.Conv2d(config.img_channels, stem_channels, k, **conv)
        self.bn = nn.BatchNorm2d(stem_channels)
        self.act = nn.ReLU(inplace=True) if config.stem_act else nn.Identity()
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if config.stem_pool else nn.Identity()
        reduction = config.stem_stride * (2 if config.stem_pool else 1)
        stem_module = "pool" if config.stem_pool else "act" if config.stem_act else "bn"
        feature_info = FeatureInfoList([FeatureInfo(stem_channels, reduction, stem_module)])

        # Stages, stacked into one flat Sequential as in the reference (state-dict names).
        blocks, stage_ends = make_stages(config, stem_channels)
        for i, end in enumerate(stage_ends):
            reduction *= config.strides[i]
            feature_info.append(FeatureInfo(config.n_channels[i], reduction, f"blocks.{end}"))
        self.blocks = nn.Sequential(*blocks)
        self.stage_ends: tuple[int, ...] = tuple(stage_ends)
        self.feature_info: FeatureInfoList = feature_info
        self.num_features = config.num_features
        self.grad_checkpointing = False
        # The registered name this model was built as (create() and the loaders give it), and
        # where its weights came from with their preprocessing and class names (None: random
        # init); pretrained_cfg is timm's view of both. Inference wrappers delegate to them.
        self.arch_name: str | None = None
        self.pretrained_info: PretrainedInfo | None = None
        self.init_weights()

    @classmethod
    def from_config(cls, config: ResNetConfig, *, arch_name: str | None = None) -> ResNetBase:
        """Build from a config; for ResNetBase the config's head (``num_classes``) is dropped."""
        kwargs = _layout_kwargs(config)
        if cls is ResNetBase:
            kwargs["num_classes"] = 0
        model = cls(
            config.n_blocks,
            config.n_channels,
            config.bottlenecks,
            config.img_channels,
            config.first_kernel_size,
            **kwargs,
        )
        model.arch_name = arch_name
        return model

    @classmethod
    def builder(
        cls,
        *,
        features_only: bool = False,
        out_indices: Sequence[int] | int | None = None,
        arch_name: str | None = None,
    ) -> Callable[[ResNetConfig], ResNetBase]:
        """``config -> model`` of this class (or a :class:`ResNetFeatures` with
        ``features_only``): what the weights loaders build into."""
        if out_indices is not None and not features_only and cls is not ResNetFeatures:
            raise ConfigError("out_indices only applies with features_only=True")
        if features_only or cls is ResNetFeatures:
            return lambda config: ResNetFeatures(config, out_indices, arch_name=arch_name)
        return lambda config: cls.from_config(config, arch_name=arch_name)

    @property
    def full_config(self) -> ResNetConfig:
        """The config of the whole network this model was built from (a feature extractor
        builds only part of it)."""
        return self.config

    def unbuilt_keys(self, keys: Iterable[str]) -> set[str]:
        """The keys of a whole network's state dict that this model does not build: the head
        of a model without one (and, for a feature extractor, the stages it stops before)."""
        return {k for k in keys if k.startswith("fc.")}

    def init_weights(self) -> None:
        """He (kaiming) normal init for convs, BN weight 1 / bias 0, optional zero-init residual."""
        if self.conv.weight.is_meta:
            return  # built to receive loaded weights: there is nothing to initialise
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # fan_out keeps the backward signal's variance through ReLU (He et al. 2015).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for block in self.blocks:
                cast(ResidualBlock | BottleneckResidualBlock, block).zero_init_last()

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, self.config.img_channels)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, img_channels, H, W] -> [B, stem_channels, H / r, W / r]``, r = feature_info[0].reduction."""
        return self.pool(self.act(self.bn(self.conv(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled last map (timm's ``forward_features``):
        ``[B, img_channels, H, W] -> [B, n_channels[-1], h, w]``."""
        if not torch.jit.is_scripting():
            self._check_input(x)
        x = self.forward_stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for block in self.blocks:
                x = checkpointed(block, x)
            return x
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last map to the pooled features ``[B, n_channels[-1]]`` (global average
        pooling over height and width); a :class:`ResNet` applies its head unless ``pre_logits``."""
        return x.mean(dim=(2, 3))

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

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int] | int | None = None) -> list[torch.Tensor]:
        """The maps described by :attr:`feature_info`: the stem's output, then each stage's.

        ``indices`` picks some of them (timm's ``out_indices``: negative indices count from the
        end); the forward pass stops after the last one needed.
        """
        return self._intermediates(x, resolve_out_indices(indices, len(self.stage_ends) + 1))

    def _intermediates(self, x: torch.Tensor, wanted: Sequence[int]) -> list[torch.Tensor]:
        self._check_input(x)
        last = max(wanted)
        outputs: dict[int, torch.Tensor] = {}
        x = self.forward_stem(x)
        if 0 in wanted:
            outputs[0] = x
        if last > 0:
            map_of_block = {end: stage + 1 for stage, end in enumerate(self.stage_ends)}
            for j, block in enumerate(self.blocks):
                x = checkpointed(block, x) if self.grad_checkpointing else block(x)
                i = map_of_block.get(j)
                if i is not None:
                    outputs[i] = x
                    if i == last:
                        break
        return [outputs[i] for i in wanted]

    def extra_repr(self) -> str:
        return f"stage_ends={list(self.stage_ends)}"

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        layout: str = "resnet_zoo",
        **push_kwargs: Any,
    ) -> str | None:
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
        """Upload config.json + model.safetensors + model card to the Hub repo ``repo_id``
        (``layout="timm"``: in timm's format, for ``timm.create_model("hf-hub:...")``)."""

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        directory_or_repo: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        token: str | bool | None = None,
        local_files_only: bool = False,
        features_only: bool = False,
        out_indices: Sequence[int] | int | None = None,
        **changes: Any,
    ) -> ResNetBase:
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
        build = cls.builder(features_only=features_only, out_indices=out_indices)
        model = from_pretrained(
            build,
            directory_or_repo,
            revision=revision,
            cache_dir=cache_dir,
            force_download=force_download,
            token=token,
            local_files_only=local_files_only,
            **changes,
        )
        return model


class ResNet(ResNetBase):
    """The classifier: :class:`ResNetBase` plus a linear head ``fc``.

    ``forward`` returns logits ``[B, num_classes]``; with ``num_classes=0`` there is no head and
    it returns the pooled features ``[B, n_channels[-1]]``.
    """

    def __init__(
        self,
        n_blocks: Sequence[int],
        n_channels: Sequence[int],
        bottlenecks: Sequence[int] | None = None,
        img_channels: int = 3,
        first_kernel_size: int = 7,
        *,
        num_classes: int = 1000,
        **layout: Any,
    ) -> None:
        """:class:`ResNetBase`'s arguments, and ``num_classes`` (0: no head)."""
        super().__init__(
            n_blocks, n_channels, bottlenecks, img_channels, first_kernel_size, num_classes=num_classes, **layout
        )
        self.num_classes = self.config.num_classes
        self.fc: nn.Module = self._make_head(self.num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0 = no head).

        The weights' class names and reported accuracy belong to the old head: they are dropped
        from ``pretrained_cfg``, which records what the weights were fine-tuned from instead."""
        self.config = self.config.replace(num_classes=num_classes)
        self.num_classes = num_classes
        ref = next(self.parameters())
        self.fc = self._make_head(num_classes).to(device=ref.device, dtype=ref.dtype)
        if self.pretrained_info is not None:
            self.pretrained_info = self.pretrained_info.for_new_head()

    def unbuilt_keys(self, keys: Iterable[str]) -> set[str]:
        return set() if self.num_classes else super().unbuilt_keys(keys)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The last map to logits ``[B, num_classes]``; ``pre_logits=True`` stops at the pooled
        features ``[B, n_channels[-1]]``."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, img_channels, H, W] -> [B, num_classes]`` logits (features if num_classes=0)."""
        return self.forward_head(self.forward_features(x))


class ResNetFeatures(ResNetBase):
    """A feature extractor: ``forward`` returns the maps chosen by ``out_indices`` as a list.

    Stages after the last chosen map are not built. ``feature_info`` lists only the chosen
    maps; module and parameter names are those of :class:`ResNetBase`.
    """

    def __init__(
        self, config: ResNetConfig, out_indices: Sequence[int] | int | None = None, *, arch_name: str | None = None
    ) -> None:
        config = config.replace(num_classes=0)
        full = len(config.n_blocks) + 1
        resolved = resolve_out_indices(out_indices, full)
        last_stage = max(resolved)  # feature map i > 0 is the output of stage i - 1
        kept = config
        if last_stage < config.n_stages:
            cut = max(last_stage, 1)
            kept = config.replace(
                n_blocks=config.n_blocks[:cut],
                n_channels=config.n_channels[:cut],
                bottlenecks=None if config.bottlenecks is None else config.bottlenecks[:cut],
                stage_strides=config.strides[:cut],
            )
        super().__init__(
            kept.n_blocks,
            kept.n_channels,
            kept.bottlenecks,
            kept.img_channels,
            kept.first_kernel_size,
            **_layout_kwargs(kept),
        )
        if last_stage == 0:
            self.blocks = nn.Sequential()  # only the stem is wanted
            self.stage_ends = ()
        self.out_indices = resolved
        self._full_config = config
        self.arch_name = arch_name
        self.feature_info = FeatureInfoList(self.feature_info[i] for i in resolved)

    @property
    def full_config(self) -> ResNetConfig:
        return self._full_config

    def unbuilt_keys(self, keys: Iterable[str]) -> set[str]:
        n = len(self.blocks)
        return {
            k for k in keys if k.startswith("fc.") or ((m := _BLOCK_KEY.match(k)) is not None and int(m.group(1)) >= n)
        }

    def save_pretrained(self, *args: Any, **kwargs: Any) -> str | None:
        raise ConfigError("save_pretrained saves whole models; save the model before features_only")

    def push_to_hub(self, *args: Any, **kwargs: Any) -> str:
        raise ConfigError("push_to_hub uploads whole models; upload the model before features_only")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        """``[B, img_channels, H, W] ->`` one ``[B, C_i, H / r_i, W / r_i]`` map per out index."""
        return self._intermediates(x, self.out_indices)
