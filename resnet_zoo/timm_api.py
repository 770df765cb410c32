"""timm's model API over a resnet_zoo model: ``pretrained_cfg``, ``feature_info``, ``group_matcher``.

timm's tools (``resolve_data_config``, ``create_transform``, ``create_optimizer_v2`` with
``layer_decay``, ``timm.models.FeatureInfo`` users) read these by timm's names and keys; they are
views over what the model holds (its config and :class:`~resnet_zoo.manifest.PretrainedInfo`),
so they cannot disagree with it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, cast

from .config import ResNetConfig
from .errors import ConfigError
from .manifest import Preprocessing, PretrainedInfo, preprocessing_for
from .registry import get_entry
from .util.checks import is_int

__all__ = [
    "FeatureInfo",
    "FeatureInfoList",
    "PretrainedCfg",
    "resolve_out_indices",
    "group_matcher",
]


@dataclass(frozen=True)
class FeatureInfo(Mapping):
    """One intermediate map: its channels, its reduction (input size / map size), its module.

    Also a read-only mapping with timm's keys (``num_chs``, ``reduction``, ``module``), as the
    entries of a timm model's ``feature_info`` are dicts.
    """

    channels: int
    reduction: int
    module: str

    @property
    def num_chs(self) -> int:
        """timm's name for :attr:`channels`."""
        return self.channels

    def _as_dict(self) -> dict[str, Any]:
        return {"num_chs": self.channels, "reduction": self.reduction, "module": self.module}

    def __getitem__(self, key: str) -> Any:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("num_chs", "reduction", "module"))

    def __len__(self) -> int:
        return 3


class FeatureInfoList(list):
    """``model.feature_info``: a list of :class:`FeatureInfo` with the accessors of timm's
    ``FeatureInfo`` (``channels()``, ``reduction()``, ``module_name()``, ``get()``, ``get_dicts()``).

    ``idx=None`` means every entry; an int one entry; a list those entries.
    """

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [fi[key] for fi in self]
        if isinstance(idx, (tuple, list)):
            return [self[i][key] for i in idx]
        return self[cast(int, idx)][key]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None) -> Any:
        pick = (lambda fi: dict(fi)) if keys is None else (lambda fi: {k: fi[k] for k in keys})
        if idx is None:
            return [pick(fi) for fi in self]
        if isinstance(idx, (tuple, list)):
            return [pick(self[i]) for i in idx]
        return pick(self[cast(int, idx)])

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)


class PretrainedCfg(Mapping):
    """``model.pretrained_cfg`` (and ``default_cfg``): timm's mapping for the model's weights.

    Keys as timm has them: ``architecture``, ``tag``, ``hf_hub_id``, ``source``, ``input_size``
    ``(C, H, W)``, ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``, ``std``,
    ``num_classes``, ``pool_size``, ``first_conv``, ``classifier``, ``license``, ``label_names``,
    ``top1``, ``description``. Never None: a randomly initialised model gets its architecture's
    preprocessing and no weights fields (``hf_hub_id``, ``label_names`` and ``top1`` are None),
    where timm would show the default weights' entry even when none were loaded.

    The fields of :class:`~resnet_zoo.manifest.PretrainedInfo` read as attributes
    (``.preprocessing`` always set, ``.labels``, ``.name``, ``.source``, ...); ``.info`` is the
    info itself, None for random init. A read-only view: change a model's weights info by
    assigning ``model.pretrained_cfg = PretrainedInfo(...)``.
    """

    def __init__(
        self, info: PretrainedInfo | None, config: ResNetConfig, arch: str | None, final_reduction: int
    ) -> None:
        self.info = info
        self._config = config
        self._arch = arch
        self._reduction = final_reduction

    @property
    def preprocessing(self) -> Preprocessing:
        size = get_entry(self._arch).input_size if self._arch else 224
        return preprocessing_for(self.info, self._config.img_channels, size)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        if name in PretrainedInfo.__dataclass_fields__:
            return getattr(self.info if self.info is not None else _NO_WEIGHTS, name)
        raise AttributeError(f"pretrained_cfg has no attribute {name!r}")

    @functools.cached_property
    def _as_dict(self) -> dict[str, Any]:
        info = self.info if self.info is not None else _NO_WEIGHTS
        p = self.preprocessing
        name = info.name or ""
        pool = math.ceil(p.input_size / self._reduction)
        return {
            "architecture": self._arch,
            "tag": name.split(".", 1)[1] if "." in name else None,
            "hf_hub_id": info.hf_hub_id,
            "source": info.source or None,
            "input_size": (self._config.img_channels, p.input_size, p.input_size),
            "crop_pct": p.crop_pct,
            "crop_mode": "center",
            "interpolation": p.interpolation,
            "mean": p.mean,
            "std": p.std,
            "num_classes": self._config.num_classes,
            "pool_size": (pool, pool),
            "first_conv": "conv1",
            "classifier": "fc",
            "license": info.license or None,
            "label_names": info.labels,
            "top1": info.top1,
            "description": info.description or None,
        }

    def __getitem__(self, key: str) -> Any:
        return self._as_dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict)

    def __len__(self) -> int:
        return len(self._as_dict)

    def __repr__(self) -> str:
        return f"PretrainedCfg({self._as_dict!r})"


_NO_WEIGHTS = PretrainedInfo()


def group_matcher(coarse: bool = False) -> dict[str, Any]:
    """timm's parameter groups for layer-wise decay, as timm's ResNet has them
    (timm/models/resnet.py, ``ResNet.group_matcher``): the stem, then one group per block
    (``coarse=True``: per stage); the head (``fc``) matches nothing and so comes last."""
    return {"stem": r"^conv1|bn1|maxpool", "blocks": r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)"}


def resolve_out_indices(indices: Sequence[int] | int | None, n_maps: int) -> tuple[int, ...]:
    """timm's ``out_indices`` (timm/models/_features.py, ``feature_take_indices``): None = all
    maps; negative indices count from the end.

    An int ``n`` means the last ``n`` maps.
    """
    if indices is None:
        return tuple(range(n_maps))
    if is_int(indices):
        if not 1 <= indices <= n_maps:
            raise ConfigError(f"out_indices={indices} must be between 1 and {n_maps} (the last n maps)")
        return tuple(range(n_maps - indices, n_maps))
    try:
        items = list(cast(Sequence[int], indices))
    except TypeError:
        raise ConfigError(f"out_indices must be a sequence of ints, got {indices!r}") from None
    if not items:
        raise ConfigError("out_indices is empty: choose at least one map")
    resolved = []
    for i in items:
        if not is_int(i, -n_maps, n_maps - 1):
            raise ConfigError(
                f"out_indices entry {i!r} is out of range: this model has {n_maps} maps "
                f"(valid: 0..{n_maps - 1}, or -{n_maps}..-1)"
            )
        resolved.append(i % n_maps)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"out_indices {list(items)} names the same map twice")
    return tuple(resolved)
