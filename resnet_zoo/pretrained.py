"""What a pretrained spec means, and loading the file it names into a new model.

spec -> file (manifest tag, ``hf-hub:owner/repo[@rev]``, a ``.safetensors`` file or a
``save_pretrained`` directory) -> safetensors only -> convert to resnet_zoo's layout -> a model
built on the meta device (no random init thrown away) -> strict load with ``assign=True`` ->
every tensor finite.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .config import ResNetConfig
from .convert import convert_state_dict
from .errors import CheckpointError, ConfigError, UnknownModelError
from .manifest import Preprocessing, WeightsSpec, get_weights, read_labels
from .model import ResNet, ResNetBase, ResNetFeatures
from .registry import ModelEntry

__all__ = [
    "PretrainedInfo",
    "build_pretrained",
    "from_pretrained",
    "load_safetensors",
    "save_pretrained",
    "adapt_input_conv",
]

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
# A header this large would hold ~millions of tensors; the largest ResNet needs ~100 KB.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 20_000


@dataclass(frozen=True)
class PretrainedInfo:
    """Where a model's weights came from and how its inputs must be prepared."""

    name: str | None = None  # "arch.tag" when the weights are a published tag
    source: str = ""  # repo id, file or directory the weights were read from
    preprocessing: Preprocessing | None = None
    labels: tuple[str, ...] | None = None
    top1: float | None = None
    license: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "labels": None if self.labels is None else list(self.labels),
            "top1": self.top1,
            "license": self.license,
            "description": self.description,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "PretrainedInfo | None":
        if not data:
            return None
        data = dict(data)
        known = {k: data.pop(k) for k in ("name", "source", "top1", "license", "description") if k in data}
        pre = data.pop("preprocessing", None)
        labels = data.pop("labels", None)
        return cls(
            preprocessing=Preprocessing(**pre) if pre else None,
            labels=tuple(labels) if labels else None,
            extra=data,
            **known,
        )


# --- Reading files ---------------------------------------------------------------------------

def _sniff(head: bytes) -> str | None:
    """Name what a file that is not safetensors really is, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (torch.save's format, with a pickle inside)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (legacy torch.save format)"
    if head.startswith(b"version https://git-lfs"):
        return "a git-lfs pointer file (the real file was not fetched: run 'git lfs pull')"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML/XML page (an error page saved in place of the file?)"
    if stripped.startswith((b"{", b"[")):
        return "a JSON document"
    return None


def _check_header(path: Path, size: int, head: bytes) -> None:
    if size < 8:
        raise CheckpointError(f"{path} is {size} bytes: too short to be a safetensors file (truncated?)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > size - 8:
        what = _sniff(head)
        if what:
            raise CheckpointError(f"{path} is not a safetensors file: it looks like {what}")
        raise CheckpointError(
            f"{path}: safetensors header claims {n} bytes but the file has only {size - 8} after "
            "the length field: truncated or not a safetensors file"
        )
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: safetensors header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(no ResNet needs more than ~100 KB): refusing to parse it"
        )
    if head[8:9] != b"{":
        what = _sniff(head)
        raise CheckpointError(
            f"{path} is not a safetensors file" + (f": it looks like {what}" if what else
                                                   " (its header is not a JSON object)")
        )


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor of a .safetensors file (never a pickle); returns (tensors, metadata)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist or is not a file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)  # enough to recognise what a non-safetensors file is
        _check_header(path, size, head)
        (n,) = struct.unpack("<Q", head[:8])
        f.seek(8)
        header_bytes = f.read(n)
    declared = header_bytes.count(b'"data_offsets"')  # counted before any parsing
    if declared > MAX_TENSORS:
        raise CheckpointError(
            f"{path}: header declares {declared} tensors, more than the {MAX_TENSORS} limit "
            "(a ResNet has at most ~1,300)"
        )
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise CheckpointError(
            f"{path}: header declares {len(header)} entries, more than the {MAX_TENSORS} limit"
        )
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a valid safetensors file: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read the tensors: {e}") from None
    return tensors, metadata


# --- Adapting a checkpoint to the requested model --------------------------------------------

def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv weights for ``in_channels`` inputs from RGB ones (timm's rule).

    1 channel: the sum over RGB (a grey image then gives the response to the same grey in RGB).
    More: RGB repeated, cut to ``in_channels`` and scaled by 3 / in_channels so the output's
    scale is kept.
    """
    out_ch, have, kh, kw = weight.shape
    if in_channels == have:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_channels == 1:
        if have > 3:  # sum the RGB part of a wider input, as timm does
            w = w[:, :3]
        w = w.sum(dim=1, keepdim=True)
    elif have != 3:
        raise CheckpointError(
            f"cannot adapt a first conv with {have} input channels to {in_channels}; only RGB "
            "(3-channel) weights are adapted"
        )
    else:
        repeat = -(-in_channels // 3)
        w = w.repeat(1, repeat, 1, 1)[:, :in_channels] * (3 / in_channels)
    return w.to(dtype)


def _describe_keys(keys: Sequence[str], limit: int = 8) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _fit_state_dict(
    model: ResNetBase, sd: dict[str, torch.Tensor], *, what: str, reinit_head: bool
) -> dict[str, torch.Tensor]:
    """Check ``sd`` against the (meta) model: names, shapes, dtypes; return what to load."""
    expected = model.state_dict()
    sd = dict(sd)
    if reinit_head:
        for k in ("fc.weight", "fc.bias"):
            sd.pop(k, None)
    if isinstance(model, ResNetFeatures):
        n = len(model.blocks)
        for k in list(sd):
            if k.startswith("fc.") or (k.startswith("blocks.") and int(k.split(".")[1]) >= n):
                del sd[k]  # stages after the last requested map and the head are not built
    for k in expected:
        prefix = k[: -len("num_batches_tracked")]
        if k.endswith("num_batches_tracked") and k not in sd and prefix + "running_mean" in sd:
            sd[k] = torch.zeros((), dtype=torch.long)  # a counter, not a weight: timm omits it
    head = {"fc.weight", "fc.bias"} if reinit_head else set()
    missing = set(expected) - set(sd) - head
    unexpected = set(sd) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe_keys(unexpected)}")
        hint = ""
        ckpt_blocks = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
        n_blocks = len(model.blocks)
        if any(k.startswith("module.") for k in unexpected):
            hint = " The keys carry a 'module.' prefix (DataParallel): convert with source='auto'."
        elif ckpt_blocks and max(ckpt_blocks) + 1 > n_blocks:
            hint = (f" The checkpoint has {max(ckpt_blocks) + 1} blocks, this model {n_blocks}: "
                    "it is a deeper architecture.")
        elif ckpt_blocks and max(ckpt_blocks) + 1 < n_blocks:
            hint = (f" The checkpoint has {max(ckpt_blocks) + 1} blocks, this model {n_blocks}: "
                    "it is a shallower architecture.")
        raise CheckpointError(f"{what} does not fit this model: " + "; ".join(parts) + "." + hint)
    out: dict[str, torch.Tensor] = {}
    cast: set[torch.dtype] = set()
    for k, ref in expected.items():
        if k in head:
            continue
        t = sd[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{what}: {k} has shape {list(t.shape)} but this model needs {list(ref.shape)} "
                "(another architecture, width or number of classes?)"
            )
        if ref.is_floating_point():
            if not t.is_floating_point():
                raise CheckpointError(
                    f"{what}: {k} has dtype {t.dtype} where floating-point weights belong; refusing it"
                )
            if t.dtype != ref.dtype:
                cast.add(t.dtype)
                t = t.to(ref.dtype)
        elif t.dtype != ref.dtype:
            if t.is_floating_point() or t.dtype == torch.bool:
                raise CheckpointError(f"{what}: {k} has dtype {t.dtype}; expected {ref.dtype}")
            t = t.to(ref.dtype)
        out[k] = t
    if cast:
        log.info("%s: cast %s weights to %s", what, sorted(str(d) for d in cast),
                 next(iter(expected.values())).dtype)
    return out


def _check_finite(model: nn.Module, what: str) -> None:
    """Refuse NaN/Inf anywhere. A tensor's sum is finite when all its values are (NaN and Inf
    propagate), so one reduction per tensor replaces a full boolean mask; only a non-finite
    sum (or an overflowing one) is looked at element by element."""
    tensors = [(k, t) for k, t in model.state_dict().items() if t.is_floating_point()]
    if not tensors:
        return
    sums = torch.stack([t.sum(dtype=torch.float32) for _, t in tensors])
    if bool(torch.isfinite(sums).all()):
        return
    for (name, t), total in zip(tensors, sums.tolist()):
        if total != total or abs(total) == float("inf"):
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise CheckpointError(f"{what}: {name} has {bad} NaN/Inf values; the file is corrupt")


def load_into_new_model(
    config: ResNetConfig,
    state_dict: dict[str, torch.Tensor],
    *,
    source: str = "auto",
    what: str,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
    num_classes_requested: bool = True,
) -> ResNetBase:
    """Convert ``state_dict`` and load it strictly into a model of ``config`` built on meta."""
    sd = convert_state_dict(state_dict, source)
    ckpt_classes = sd["fc.weight"].shape[0] if "fc.weight" in sd else 0
    if not num_classes_requested:
        config = config.replace(num_classes=ckpt_classes)
    reinit_head = config.num_classes != ckpt_classes and not features_only
    if reinit_head:
        log.info("%s: checkpoint head has %d classes, model wants %d: the head is re-initialised",
                 what, ckpt_classes, config.num_classes)
    first = sd.get("conv.weight")
    if first is not None and first.ndim == 4 and first.shape[1] != config.img_channels:
        log.info("%s: adapting the first conv from %d to %d input channels",
                 what, first.shape[1], config.img_channels)
        sd["conv.weight"] = adapt_input_conv(first, config.img_channels)
    with torch.device("meta"):
        model = ResNetFeatures(config, out_indices) if features_only else ResNet.from_config(config)
    to_load = _fit_state_dict(model, sd, what=what, reinit_head=reinit_head)
    head_classes = config.num_classes
    if reinit_head:
        model.fc = nn.Identity()
    model.load_state_dict(to_load, strict=True, assign=True)
    if reinit_head:
        model.reset_classifier(head_classes)
    _check_finite(model, what)
    return model


# --- Resolving a spec -------------------------------------------------------------------------

@dataclass
class _Resolved:
    file: Path
    source: str
    what: str
    config: ResNetConfig | None = None  # a save_pretrained directory's own config
    info: PretrainedInfo | None = None


def _info_from_spec(spec: WeightsSpec) -> PretrainedInfo:
    labels = tuple(read_labels(spec.labels)) if spec.labels else None
    source = f"hf-hub:{spec.hf_hub_id}" if spec.hf_hub_id else f"resnet_zoo/weights/{spec.path}"
    return PretrainedInfo(
        name=spec.name, source=source, preprocessing=spec.preprocessing,
        labels=labels, top1=spec.top1, license=spec.license, description=spec.description,
    )


def _read_directory_config(path: Path) -> tuple[ResNetConfig, PretrainedInfo | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable JSON config: {e}") from None
    if not isinstance(data, dict) or "config" not in data or data.get("library") != "resnet_zoo":
        raise CheckpointError(
            f"{path} is not a resnet_zoo config (written by save_pretrained): it needs "
            "'library': 'resnet_zoo' and a 'config' object"
        )
    config = ResNetConfig.from_dict(data["config"])
    info = PretrainedInfo.from_dict(data.get("pretrained"))
    return config, info, data.get("architecture")


def _resolve_directory(directory: Path) -> _Resolved:
    cfg_path, weights = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no {WEIGHTS_NAME} (expected a save_pretrained directory)")
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME} (expected a save_pretrained directory)")
    config, info, _ = _read_directory_config(cfg_path)
    info = replace(info, source=str(directory)) if info else PretrainedInfo(source=str(directory))
    return _Resolved(weights, "resnet_zoo", str(directory), config, info)


def parse_hf_hub(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:owner/repo@rev" -> ("owner/repo", "rev")``."""
    body = spec[len("hf-hub:"):]
    repo, _, revision = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(f"{spec!r}: expected 'hf-hub:owner/repo' or 'hf-hub:owner/repo@revision'")
    return repo, (revision or None)


def _resolve_hf_hub(repo: str, revision: str | None, cache_dir: Any) -> _Resolved:
    from . import hub
    from .errors import UnknownModelError as _Unknown

    weights = hub.download(repo, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir)
    config = info = None
    try:
        cfg_path = hub.download(repo, CONFIG_NAME, revision=revision, cache_dir=cache_dir)
    except _Unknown:
        cfg_path = None  # a repo with weights only (e.g. converted by hand): layout detected
    if cfg_path is not None:
        try:
            config, info, _ = _read_directory_config(cfg_path)
        except (CheckpointError, ConfigError):
            config = info = None  # timm's or transformers' config.json: not ours, keys decide
    source = "resnet_zoo" if config is not None else "auto"
    what = f"hf-hub:{repo}" + (f"@{revision}" if revision else "")
    info = replace(info, source=what) if info else PretrainedInfo(source=what)
    return _Resolved(weights, source, what, config, info)


def resolve(
    entry: ModelEntry, tag: str | None, pretrained: Any, *, cache_dir: Any = None,
    revision: str | None = None,
) -> _Resolved:
    """Turn a pretrained spec into a verified local file (downloading it if needed)."""
    from . import hub

    if pretrained is True or (isinstance(pretrained, str) and pretrained == tag):
        spec = get_weights(entry.name, tag)
        return _resolve_tag(spec, cache_dir, revision, hub)
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    if not isinstance(pretrained, str):
        raise ConfigError(
            f"pretrained must be False, True, a weights tag, 'hf-hub:owner/repo[@rev]', a "
            f".safetensors file or a save_pretrained directory; got {pretrained!r}"
        )
    if pretrained.startswith("hf-hub:"):
        repo, rev = parse_hf_hub(pretrained)
        return _resolve_hf_hub(repo, revision or rev, cache_dir)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return _resolve_directory(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path}: only .safetensors files are loaded (a pickle can run code). Convert a "
                f".pth/.bin checkpoint first: resnet-zoo convert {path} --arch {entry.name} --out DIR"
            )
        return _Resolved(path, "auto", str(path), None, PretrainedInfo(source=str(path)))
    looks_like_path = os.sep in pretrained or pretrained.endswith((".safetensors", ".pth", ".pt", ".bin"))
    if looks_like_path:
        raise CheckpointError(f"pretrained path {pretrained!r} does not exist")
    try:
        spec = get_weights(entry.name, pretrained)
    except UnknownModelError as e:
        raise UnknownModelError(f"{e} (and no file or directory {pretrained!r} exists)") from None
    return _resolve_tag(spec, cache_dir, revision, hub)


def _resolve_tag(spec: WeightsSpec, cache_dir: Any, revision: str | None, hub: Any) -> _Resolved:
    if spec.path:  # shipped inside the package: no network, but the same sha256 check
        from .manifest import data_path

        directory = data_path(spec.path)
        hub.verify_file(directory / spec.filename, expected_sha256=spec.sha256, what=spec.name,
                        evict=False)
        resolved = _resolve_directory(directory)
        info = _info_from_spec(spec)
        if resolved.info is not None:
            info = replace(info, labels=info.labels or resolved.info.labels,
                           extra={**resolved.info.extra, **info.extra})
        return _Resolved(resolved.file, "resnet_zoo", spec.name, resolved.config, info)
    rev = revision or spec.revision or None
    file = hub.download(spec.hf_hub_id, spec.filename, revision=rev, cache_dir=cache_dir,
                        expected_sha256=spec.sha256 if not revision else "")
    return _Resolved(file, spec.source, spec.name, None, _info_from_spec(spec))


def _architecture_fields(config: ResNetConfig) -> dict[str, Any]:
    d = config.to_dict()
    for k in ("num_classes", "img_channels", "zero_init_residual"):
        d.pop(k)
    return d


def build_pretrained(
    entry: ModelEntry,
    tag: str | None,
    changes: dict[str, Any],
    pretrained: Any,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
    cache_dir: Any = None,
    revision: str | None = None,
) -> ResNetBase:
    """create()'s weights path: resolve, read, convert, load into a model built on meta."""
    resolved = resolve(entry, tag, pretrained, cache_dir=cache_dir, revision=revision)
    base = entry.config
    if resolved.config is not None:
        theirs, ours = _architecture_fields(resolved.config), _architecture_fields(entry.config)
        if theirs != ours:
            diff = sorted(k for k, v in theirs.items() if ours[k] != v)
            raise CheckpointError(
                f"{resolved.what} holds a different architecture than {entry.name!r} "
                f"(differs in {', '.join(diff)}); load it with ResNet.from_pretrained"
            )
        base = resolved.config
    model = _load_resolved(resolved, base, changes, features_only, out_indices)
    model.arch_name = entry.name
    return model


def _load_resolved(
    resolved: _Resolved, base: ResNetConfig, changes: dict[str, Any], features_only: bool,
    out_indices: Sequence[int] | int | None,
) -> ResNetBase:
    """Read the resolved file into a model of ``base`` with ``changes``; attach where it came from."""
    state_dict, _ = load_safetensors(resolved.file)
    model = load_into_new_model(
        base.replace(**changes), state_dict, source=resolved.source, what=resolved.what,
        features_only=features_only, out_indices=out_indices,
        num_classes_requested="num_classes" in changes,
    )
    info = resolved.info
    if info is not None and info.labels is not None and getattr(model, "num_classes", 0) != len(info.labels):
        info = replace(info, labels=None)  # a new head: the old class names no longer apply
    model.pretrained_cfg = info
    return model


def from_pretrained(
    directory_or_repo: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: Any = None,
    features_only: bool = False,
    out_indices: Sequence[int] | int | None = None,
    **changes: Any,
) -> ResNetBase:
    """Load a save_pretrained directory or a Hub repo (``owner/repo`` or ``hf-hub:owner/repo``)."""
    spec = os.fspath(directory_or_repo)
    path = Path(spec).expanduser()
    if path.is_dir():
        resolved = _resolve_directory(path)
    else:
        if spec.startswith("hf-hub:"):
            repo, rev = parse_hf_hub(spec)
        else:
            if spec.count("/") != 1 or spec.startswith((".", "/")):
                raise CheckpointError(
                    f"{spec!r} is neither a directory nor a Hub repo id ('owner/repo')"
                )
            repo, rev = spec, None
        resolved = _resolve_hf_hub(repo, revision or rev, cache_dir)
        if resolved.config is None:
            raise CheckpointError(
                f"{resolved.what} has no resnet_zoo config.json; load it with "
                "resnet_zoo.create(ARCH, pretrained='hf-hub:...') naming the architecture"
            )
    return _load_resolved(resolved, resolved.config, changes, features_only, out_indices)


# --- Saving -------------------------------------------------------------------------------------

def _config_document(model: ResNetBase) -> dict[str, Any]:
    from . import __version__

    info: PretrainedInfo | None = getattr(model, "pretrained_cfg", None)
    config = getattr(model, "full_config", None) or model.config
    if isinstance(model, ResNetFeatures):
        raise ConfigError("save_pretrained saves whole models; save the model before features_only")
    return {
        "library": "resnet_zoo",
        "format_version": FORMAT_VERSION,
        "resnet_zoo_version": __version__,
        "architecture": getattr(model, "arch_name", None),
        "config": config.to_dict(),
        "pretrained": None if info is None else info.to_dict(),
    }


def model_card(model: ResNetBase, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A Hub model card: its metadata (YAML front matter) and its text (architecture,
    parameters, source, metrics, usage)."""
    info: PretrainedInfo | None = getattr(model, "pretrained_cfg", None)
    arch = document.get("architecture") or "custom ResNet"
    params = sum(p.numel() for p in model.parameters())
    metadata = {
        "library_name": "resnet_zoo",
        "license": (info.license or None) if info else None,
        "tags": ["image-classification", "resnet", "resnet_zoo"],
        "pipeline_tag": "image-classification",
    }
    lines = [
        f"# {arch} (resnet_zoo)", "",
        "A ResNet (He et al. 2016, https://arxiv.org/abs/1512.03385) saved by resnet_zoo: "
        "`config.json` describes the network completely, `model.safetensors` holds the weights.", "",
        "| | |", "|---|---|",
        f"| architecture | `{arch}` |",
        f"| parameters | {params:,} |",
        f"| classes | {model.config.num_classes} |",
        f"| input channels | {model.config.img_channels} |",
    ]
    if info is not None:
        if info.name:
            lines.append(f"| weights | `{info.name}` |")
        if info.source:
            lines.append(f"| source | {info.source} |")
        if info.top1 is not None:
            lines.append(f"| reported top-1 | {info.top1:.3f}% |")
        for key, value in sorted(info.extra.items()):
            if key == "heldout_accuracy" and isinstance(value, float):
                n = info.extra.get("heldout_images")
                right = f" ({round(value * n)}/{n})" if isinstance(n, int) else ""
                lines.append(f"| held-out accuracy | {100 * value:.2f}%{right} |")
            elif key == "command":
                lines.append(f"| command | `{value}` |")
            elif key == "license_notice":
                continue  # its own section below: a notice is reproduced whole
            elif key == "recipe" and isinstance(value, dict):
                lines.append("| recipe | " + ", ".join(f"{k}={v}" for k, v in value.items()) + " |")
            elif isinstance(value, (str, int, float)):
                lines.append(f"| {key} | {value} |")
        if info.preprocessing is not None:
            p = info.preprocessing
            lines.append(
                f"| preprocessing | {p.input_size}px, crop_pct {p.crop_pct}, {p.interpolation}, "
                f"mean {list(p.mean)}, std {list(p.std)} |"
            )
    notice = info.extra.get("license_notice") if info is not None else None
    if isinstance(notice, str) and notice.strip():
        lines += ["", "## Licence", "", f"Licence: {info.license or 'see below'}. The original "
                  "notice, reproduced as it asks:", "", "```", notice.strip(), "```"]
    lines += [
        "", "## Use", "", "```python", "import resnet_zoo",
        'model = resnet_zoo.ResNet.from_pretrained("<this directory or owner/repo>").eval()',
        "```", "",
    ]
    return metadata, "\n".join(lines)


def save_pretrained(
    model: ResNetBase, save_directory: str | os.PathLike, *, push_to_hub: bool = False,
    repo_id: str | None = None, **push_kwargs: Any,
) -> str | None:
    from . import hub

    document = _config_document(model)
    return hub.save_pretrained(
        model, save_directory, config=document, card=model_card(model, document),
        push_to_hub=push_to_hub, repo_id=repo_id, **push_kwargs,
    )


def push_to_hub(model: ResNetBase, repo_id: str, **kwargs: Any) -> str:
    from . import hub

    document = _config_document(model)
    return hub.push_to_hub(model, repo_id, config=document, card=model_card(model, document), **kwargs)


# --- Converting foreign checkpoints and pinning published ones --------------------------------

def _unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint ({'state_dict': ...}, {'model': ...}, ...)."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "module", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                log.info("%s: using the checkpoint's %r entry", path, key)
                return inner
    found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{path} holds no state dict of tensors (found: {found}); save model.state_dict()"
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch.save file read with ``weights_only=True``.

    A pickle that needs anything beyond tensors and plain containers is refused; there is no
    retry without ``weights_only``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        return load_safetensors(path)[0]
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError for bad zips, EOFError, ...
        raise CheckpointError(
            f"{path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}). Only plain state dicts are "
            "converted; code inside a pickle is never run"
        ) from None
    return _unwrap_checkpoint(obj, path)


def convert_checkpoint(
    src: str | os.PathLike, arch: str, out: str | os.PathLike, *, source: str = "auto",
    num_classes: int | None = None,
) -> ResNetBase:
    """Turn a foreign checkpoint into a ``save_pretrained`` directory that create() loads."""
    from .registry import get_entry

    entry = get_entry(arch)
    state_dict = read_checkpoint(src)
    config = entry.config if num_classes is None else entry.config.replace(num_classes=num_classes)
    model = load_into_new_model(config, state_dict, source=source, what=str(src),
                                num_classes_requested=num_classes is not None)
    model.arch_name = entry.name
    from .convert import detect_layout

    layout = detect_layout(state_dict) if source == "auto" else source
    model.pretrained_cfg = PretrainedInfo(source=str(src), extra={"converted_from": layout})
    model.save_pretrained(out)
    return model


def pin_weights(tags: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Resolve the Hub's current commit, sha256 and size of each tag; write them to the manifest."""
    from . import hub
    from .manifest import load_manifest, manifest_path, write_pins

    specs = load_manifest()
    names = list(tags) if tags else list(specs)
    pins: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in specs:
            raise UnknownModelError(f"unknown weights {name!r}; the manifest has: {', '.join(specs)}")
        spec = specs[name]
        if spec.path:
            log.info("%s is shipped in weights/ and pinned when it is shipped: skipped", name)
            continue
        meta = hub.file_metadata(spec.hf_hub_id, spec.filename, revision="main")
        sha = meta["etag"] if meta["etag"] and len(meta["etag"]) == 64 else ""
        if not sha:  # not an LFS file: its ETag is not a content sha256, so hash the file
            path = hub.download(spec.hf_hub_id, spec.filename, revision=meta["commit"])
            sha = hub.sha256_file(path)
        pins[name] = {"revision": meta["commit"], "sha256": sha, "size": meta["size"]}
        log.info("pinned %s at %s (%s bytes)", name, meta["commit"], meta["size"])
    write_pins(manifest_path(), pins)
    return pins
