"""The loaders: a resolved :class:`~.resolve.WeightsSource` into a model that ``build`` makes."""

from __future__ import annotations

import os
from typing import Any, cast

from torch import nn

from ..config import ResNetConfig
from .files import load_safetensors
from .fit import Build, fit
from .resolve import WeightsSource, resolve_saved

__all__ = ["load", "from_pretrained"]


def load(source: WeightsSource, build: Build, config: ResNetConfig, *,
         num_classes_requested: bool, arch: str | None = None) -> nn.Module:
    """Read ``source`` into ``build(config)`` and attach where it came from (``pretrained_info``).

    Without ``num_classes_requested`` the head takes the checkpoint's number of classes.
    """
    state_dict, _ = load_safetensors(source.file)
    model = fit(build, config, state_dict, layout=source.layout, what=source.what,
                num_classes_requested=num_classes_requested, arch=arch, info=source.info)
    if model.arch_name is None:
        model.arch_name = arch  # the registered name the weights were saved as
    return model


def from_pretrained(build: Build, directory_or_repo: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: Any = None, force_download: bool = False, token: Any = None,
                    local_files_only: bool = False, **changes: Any) -> nn.Module:
    """A save_pretrained directory or Hub repo into ``build(saved config with changes)``."""
    source = resolve_saved(directory_or_repo, revision=revision, cache_dir=cache_dir,
                           force_download=force_download, token=token, local_files_only=local_files_only)
    saved = cast(ResNetConfig, source.config)  # resolve_saved refuses a source without one
    return load(source, build, saved.replace(**changes),
                num_classes_requested="num_classes" in changes, arch=source.architecture)
