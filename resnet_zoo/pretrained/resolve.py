"""What a pretrained spec means: a published tag, ``hf-hub:owner/repo[@rev]``, a ``.safetensors``
file or a ``save_pretrained`` directory, resolved once into a :class:`WeightsSource`: a verified
local file, the config it was saved with (if any) and where it came from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import ResNetConfig
from ..errors import CheckpointError, ConfigError, IntegrityError, UnknownModelError
from ..manifest import PretrainedInfo, WeightsSpec, data_path, get_weights
from ..registry import list_models
from ..util.checks import is_int
from ..util.integrity import check_repo_id, check_revision, not_a_regular_file, printable, sha256_file
from . import hub
from .files import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME

__all__ = ["WeightsSource", "resolve", "resolve_saved", "parse_hf_hub", "read_config_document"]


@dataclass(frozen=True)
class WeightsSource:
    """A resolved pretrained spec."""

    file: Path  # a verified local .safetensors file
    layout: str  # key layout for convert_state_dict: "resnet_zoo" for our own files, else "auto"
    label: str  # how errors name it
    config: ResNetConfig | None = None  # the full config saved beside the weights, if any
    info: PretrainedInfo | None = None
    architecture: str | None = None  # the registered name it was saved as, if any


MAX_CONFIG_BYTES = 1 << 20  # save_pretrained writes about 2 kB


class ForeignConfig(CheckpointError):
    """A config.json that is not resnet_zoo's (timm's, transformers'): the weights' keys decide
    the layout; :func:`foreign_info` reads what it says of labels and preprocessing."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


# transformers' ResNetConfig fields whose non-default values the ResNets here do not build: the
# keys and shapes would match and the logits would be wrong, so such a file is refused.
_TRANSFORMERS_UNBUILT = {
    "downsample_in_bottleneck": (False, "the stride on the bottleneck's first 1x1 conv (ResNet v1)"),
    "downsample_in_first_stage": (False, "a stride-2 first stage"),
    "hidden_act": ("relu", "another activation than ReLU"),
}


def foreign_info(data: Any, label: str) -> PretrainedInfo | None:
    """What a timm or transformers config.json says of the weights (class names, timm's
    preprocessing), validated as resnet_zoo's own; a transformers config that describes a
    network built otherwise than here is refused, naming the field."""
    if not isinstance(data, dict):
        return None
    fields: dict[str, Any] = {}
    if data.get("model_type") == "resnet":  # transformers
        for key, (default, what) in _TRANSFORMERS_UNBUILT.items():
            if key in data and data[key] != default:
                raise CheckpointError(
                    f"{label}: transformers' config says {key}={data[key]!r} ({what}); resnet_zoo builds "
                    f"{key}={default!r} only, and loading would give wrong outputs"
                )
        id2label = data.get("id2label")
        if isinstance(id2label, dict) and all(is_int_text(k) for k in id2label):
            names = [id2label[k] for k in sorted(id2label, key=int)]
            if [int(k) for k in sorted(id2label, key=int)] == list(range(len(names))):
                fields["labels"] = names
    else:  # timm's save_for_hf / layout="timm": label_names and a pretrained_cfg
        if isinstance(data.get("label_names"), list):
            fields["labels"] = data["label_names"]
        cfg = data.get("pretrained_cfg")
        if isinstance(cfg, dict) and {"mean", "std", "crop_pct", "interpolation", "input_size"} <= set(cfg):
            size = cfg["input_size"]
            fields["preprocessing"] = {
                "input_size": size[-1] if isinstance(size, list) and size else size,
                **{k: cfg[k] for k in ("crop_pct", "interpolation", "mean", "std")},
            }
    return PretrainedInfo.from_dict(fields, where=label) if fields else None


def foreign_architecture(data: Any) -> str | None:
    """The registered architecture a timm config.json names (``"architecture": "resnet50"``)."""
    name = data.get("architecture") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name in list_models() else None


def is_int_text(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() and len(value) < 7


def read_config_document(path: Path) -> tuple[ResNetConfig, PretrainedInfo | None, str | None]:
    """The config, pretrained info and architecture name of a save_pretrained config.json."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise CheckpointError(
                f"{path} is {size:,} bytes: a config.json is a few kB (the limit is {MAX_CONFIG_BYTES:,} bytes)"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a readable JSON config: {e}") from None
    if not isinstance(data, dict) or "config" not in data or data.get("library") != "resnet_zoo":
        raise ForeignConfig(
            f"{path} is not a resnet_zoo config (written by save_pretrained): it needs "
            "'library': 'resnet_zoo' and a 'config' object",
            data,
        )
    version = data.get("format_version", 1)
    if not is_int(version, high=FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: format_version {version!r} is not one this resnet_zoo reads "
            f"(<= {FORMAT_VERSION}); upgrade resnet_zoo"
        )
    try:
        config = ResNetConfig.from_dict(data["config"])
    except ConfigError as e:  # a bad file, not a bad argument
        raise CheckpointError(f"{path}: {e}") from None
    info = PretrainedInfo.from_dict(data.get("pretrained"), where=str(path))
    architecture = data.get("architecture")
    return config, info, architecture if isinstance(architecture, str) else None


def _from_directory(directory: Path) -> WeightsSource:
    cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME} (expected a save_pretrained directory)")
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME} (expected a save_pretrained directory)")
    layout = "resnet_zoo"
    try:
        config, info, arch = read_config_document(cfg_path)
    except ForeignConfig as foreign:  # timm's or transformers' directory: the keys decide the layout
        config, layout = None, "auto"
        info, arch = foreign_info(foreign.data, str(directory)), foreign_architecture(foreign.data)
    info = replace(info, source=str(directory)) if info else PretrainedInfo(source=str(directory))
    return WeightsSource(weights, layout, str(directory), config, info, arch)


def parse_hf_hub(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:owner/repo@rev" -> ("owner/repo", "rev")``."""
    body = spec[len("hf-hub:") :]
    repo, at, revision = body.partition("@")
    check_repo_id(repo, spec=spec)
    if at:
        check_revision(revision, label=f"the revision of {printable(spec[:120])!r}")
    return repo, (revision or None)


def _from_hf_hub(repo: str, revision: str | None, cache_dir: Any, **download: Any) -> WeightsSource:
    """``download``: huggingface_hub's usual arguments (``force_download``, ``token``,
    ``local_files_only``), passed on to both files."""
    weights = hub.download(repo, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir, **download)
    # A repo with weights only (torchvision's, uploaded by hand) has no config.json: the keys
    # decide the layout. Offline, the absence the Hub reported is read from the cache.
    cfg_path = hub.download_optional(
        repo, CONFIG_NAME, revision=revision, cache_dir=cache_dir, max_size=MAX_CONFIG_BYTES, **download
    )
    config = info = arch = None
    if cfg_path is not None:
        try:
            config, info, arch = read_config_document(cfg_path)
        except ForeignConfig as foreign:  # timm's or transformers' config.json: not ours, keys decide
            config, arch = None, foreign_architecture(foreign.data)
            info = foreign_info(foreign.data, f"hf-hub:{repo}")
        except (CheckpointError, ConfigError) as e:  # ours, but malformed or hostile: refused
            raise CheckpointError(f"hf-hub:{repo}: {e}") from None
    label = f"hf-hub:{repo}" + (f"@{revision}" if revision else "")
    info = replace(info, source=label) if info else PretrainedInfo(source=label)
    return WeightsSource(weights, "resnet_zoo" if config is not None else "auto", label, config, info, arch)


def _from_spec(spec: WeightsSpec, cache_dir: Any, revision: str | None) -> WeightsSource:
    """A published tag: shipped in weights/ (no network, the same sha256 check) or on the Hub."""
    info = PretrainedInfo.from_spec(spec)
    if spec.path:
        directory = data_path(spec.path)
        actual = sha256_file(directory / spec.filename)
        if actual != spec.sha256:
            raise IntegrityError(
                f"{spec.name}: sha256 {actual} differs from the manifest's {spec.sha256}: "
                "the installed file was modified or damaged; reinstall resnet_zoo"
            )
        saved = _from_directory(directory)
        if saved.info is not None:
            info = replace(info, labels=info.labels or saved.info.labels, extra={**saved.info.extra, **info.extra})
        return WeightsSource(saved.file, "resnet_zoo", spec.name, saved.config, info, spec.arch)
    rev = revision or spec.revision or None
    file = hub.download(
        spec.hf_hub_id,
        spec.filename,
        revision=rev,
        cache_dir=cache_dir,
        expected_sha256=spec.sha256 if not revision else "",
        expected_size=spec.size if spec.sha256 and not revision else None,
    )
    return WeightsSource(file, spec.source, spec.name, None, info, spec.arch)


def resolve(
    arch: str, tag: str | None, pretrained: Any, *, cache_dir: Any = None, revision: str | None = None
) -> WeightsSource:
    """``create()``'s ``pretrained`` for the registered ``arch`` (named with ``tag``, or not)."""
    revision = check_revision(revision)
    if pretrained is True or (isinstance(pretrained, str) and pretrained == tag):
        return _from_spec(get_weights(arch, tag), cache_dir, revision)
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise ConfigError(
            f"pretrained must be False, True, a weights tag, 'hf-hub:owner/repo[@rev]', a "
            f".safetensors file or a save_pretrained directory; got {pretrained!r}"
        )
    if pretrained.startswith("hf-hub:"):
        repo, rev = parse_hf_hub(pretrained)
        return _from_hf_hub(repo, revision or rev, cache_dir)
    if not pretrained.strip():
        raise ConfigError(
            "pretrained='' names nothing: give True, a weights tag, 'hf-hub:owner/repo', "
            "a .safetensors file or a save_pretrained directory (False: random init)"
        )
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return _from_directory(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path}: only .safetensors files are loaded (a pickle can run code). Convert a "
                f".pth/.bin checkpoint first: resnet-zoo convert {path} --arch {arch} --out DIR"
            )
        return WeightsSource(path, "auto", str(path), None, PretrainedInfo(source=str(path)))
    looks_like_path = os.sep in pretrained or pretrained.endswith((".safetensors", ".pth", ".pt", ".bin"))
    if looks_like_path or os.path.lexists(path):
        raise CheckpointError(
            f"pretrained path {pretrained!r} {not_a_regular_file(path)}: give a "
            ".safetensors file or a save_pretrained directory"
        )
    try:
        spec = get_weights(arch, pretrained)
    except UnknownModelError as e:
        raise UnknownModelError(f"{e} (and no file or directory {pretrained!r} exists)") from None
    return _from_spec(spec, cache_dir, revision)


def resolve_saved(
    directory_or_repo: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: Any = None,
    force_download: bool = False,
    token: Any = None,
    local_files_only: bool = False,
) -> WeightsSource:
    """``from_pretrained``'s argument: a save_pretrained directory, or a Hub repo written by it
    (fetched with huggingface_hub's ``force_download``, ``token`` and ``local_files_only``)."""
    revision = check_revision(revision)
    spec = os.fspath(directory_or_repo)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_directory(path)
    if spec.startswith("hf-hub:"):
        repo, rev = parse_hf_hub(spec)
    else:
        if spec.count("/") != 1 or spec.startswith((".", "/")):
            raise CheckpointError(f"{spec!r} is neither a directory nor a Hub repo id ('owner/repo')")
        repo, rev = spec, None
    source = _from_hf_hub(
        repo,
        revision or rev,
        cache_dir,
        force_download=bool(force_download),
        token=token,
        local_files_only=bool(local_files_only),
    )
    return source  # without resnet_zoo's config.json, from_pretrained finds the architecture
