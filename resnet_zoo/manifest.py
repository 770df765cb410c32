"""The weights manifest (``weights/manifest.json``) and the other data in ``weights/``; stdlib only.

``weights/`` must reach users both from a git clone (torch.hub, editable installs) and from an
installed wheel (where it is packaged as ``resnet_zoo._weights``): :func:`data_path` is the one
place that knows where it is. ``RESNET_ZOO_MANIFEST`` may point at another manifest file
(a private mirror, or a test).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError, UnknownModelError
from .util.atomic import write_text_atomic
from .util.checks import is_int, is_number

__all__ = [
    "preprocessing_for",
    "Preprocessing",
    "PretrainedInfo",
    "WeightsSpec",
    "data_path",
    "load_manifest",
    "weight_names",
    "get_weights",
    "default_tag",
    "read_labels",
]

MANIFEST_ENV = "RESNET_ZOO_MANIFEST"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# Bounds that real weights never leave, so that a hostile config.json cannot make an image
# resize into gigabytes (input_size 40000, crop_pct 1e-6) before any image is touched.
MAX_INPUT_SIZE = 2048
MIN_CROP_PCT = 0.25  # resize to at most 4x the crop: 8192 px at the largest input size
MIN_STD = 1e-3
MAX_CHANNELS = 64
MAX_LABELS = 100_000  # ImageNet-21k has 21,843 classes
MAX_LABEL_CHARS = 500


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Preprocessing:
    """How images are prepared for a set of weights: resize the shorter side to
    ``input_size / crop_pct``, centre-crop ``input_size``, scale to [0, 1], normalise."""

    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if (
                isinstance(values, (str, bytes))
                or not hasattr(values, "__len__")
                or not 1 <= len(values) <= MAX_CHANNELS
                or not all(is_number(v) or (isinstance(v, float) and not math.isfinite(v)) for v in values)
            ):
                raise ConfigError(
                    f"preprocessing.{name} must be a list of 1 to {MAX_CHANNELS} numbers, got {_short(values)}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not is_int(self.input_size, 1, MAX_INPUT_SIZE):
            raise ConfigError(
                f"preprocessing.input_size must be an integer from 1 to {MAX_INPUT_SIZE}, got {_short(self.input_size)}"
            )
        if not is_number(self.crop_pct, MIN_CROP_PCT, 1):
            raise ConfigError(
                f"preprocessing.crop_pct must be a number from {MIN_CROP_PCT} to 1, got {_short(self.crop_pct)}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"preprocessing.interpolation must be one of {list(INTERPOLATIONS)}, got {_short(self.interpolation)}"
            )
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in self.mean):
            raise ConfigError(
                f"preprocessing.mean {list(self.mean)} must be numbers from 0 to 1 (images are scaled to [0, 1] first)"
            )
        if not all(math.isfinite(v) and MIN_STD <= v <= 1 for v in self.std):
            raise ConfigError(f"preprocessing.std {list(self.std)} must be numbers from {MIN_STD} to 1")
        if len(self.mean) != len(self.std):
            raise ConfigError(
                f"preprocessing mean {list(self.mean)} and std {list(self.std)} need one entry per channel"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def default(cls, img_channels: int = 3, input_size: int = 224) -> Preprocessing:
        """What a model without weights is fed: its architecture's input size (224 unless
        the registry says otherwise), ImageNet's statistics for RGB and 0.5 / 0.5 otherwise."""
        crop_pct = 0.875 if input_size > 64 else 1.0
        if img_channels == 3:
            return cls(input_size=input_size, crop_pct=crop_pct)
        return cls(input_size=input_size, crop_pct=crop_pct, mean=(0.5,) * img_channels, std=(0.5,) * img_channels)


def preprocessing_for(info: PretrainedInfo | None, img_channels: int, input_size: int) -> Preprocessing:
    """What a model is fed (the one lookup; a model's ``pretrained_cfg.preprocessing`` asks it):
    its weights' preprocessing, or without weights its architecture's default
    (:meth:`Preprocessing.default` for ``img_channels`` and the registry's ``input_size``)."""
    if info is not None and info.preprocessing is not None:
        return info.preprocessing
    return Preprocessing.default(img_channels, input_size)


@dataclass(frozen=True)
class WeightsSpec:
    """One published set of weights, ``arch.tag``."""

    name: str
    hf_hub_id: str  # "owner/repo" on the Hub; empty for weights shipped in weights/
    filename: str
    source: str
    path: str = ""  # a save_pretrained directory inside weights/, shipped with the package
    revision: str = ""
    sha256: str = ""
    size: int | None = None
    default: bool = False
    num_classes: int = 1000
    labels: str | None = None
    top1: float | None = None  # the publisher's figure
    top1_source: str = ""  # where it comes from, and on which data
    # Our own measurements: {"top1": %, "data": what it was measured on, "by": the script}.
    evaluations: tuple[dict[str, Any], ...] = ()
    license: str = ""
    description: str = ""
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)

    def to_dict(self) -> dict[str, Any]:
        """What ``resnet-zoo weights list --json`` shows of each tag."""
        return {
            "hf_hub_id": self.hf_hub_id,
            "path": self.path,
            "top1": self.top1,
            "top1_source": self.top1_source,
            "evaluations": list(self.evaluations),
            "license": self.license,
            "default": self.default,
            "pinned": self.pinned,
            "preprocessing": self.preprocessing.to_dict(),
        }


@dataclass(frozen=True)
class PretrainedInfo:
    """Where a model's weights came from and how its inputs must be prepared.

    A model carries one as ``model.pretrained_info`` (``None`` for random init; timm's
    ``model.pretrained_cfg`` mapping reads it); the loaders set it, ``save_pretrained`` writes it
    into config.json and the model card, and the inference wrappers, ``predict`` and the
    transforms read it.
    """

    name: str | None = None  # "arch.tag" when the weights are a published tag
    source: str = ""  # repo id, file or directory the weights were read from
    preprocessing: Preprocessing | None = None
    labels: tuple[str, ...] | None = None
    top1: float | None = None
    license: str = ""
    description: str = ""
    # The Hub id or tag these weights were fine-tuned from (set when the head is replaced).
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def hf_hub_id(self) -> str | None:
        """``"hf-hub:owner/repo@commit" -> "owner/repo"``; None for a source that is not the Hub."""
        if not self.source.startswith("hf-hub:"):
            return None
        return self.source[len("hf-hub:") :].split("@", 1)[0] or None

    @property
    def origin(self) -> str | None:
        """What these weights are called where they came from: the Hub repo id, else the
        published tag, else the source."""
        return self.hf_hub_id or self.name or self.source or None

    def for_new_head(self) -> PretrainedInfo:
        """The info after the head is replaced: the tag, the class names and the reported
        accuracy belong to the old weights and are dropped; ``base_model`` says where the body
        came from."""
        return replace(
            self,
            name=None,
            labels=None,
            top1=None,
            base_model=self.base_model or self.origin,
            extra={k: v for k, v in self.extra.items() if k not in ("heldout_accuracy", "heldout_images")},
        )

    @classmethod
    def from_spec(cls, spec: WeightsSpec) -> PretrainedInfo:
        """The info of a published tag: its name, where it lives, preprocessing and class names."""
        labels = tuple(read_labels(spec.labels)) if spec.labels else None
        source = f"hf-hub:{spec.hf_hub_id}" if spec.hf_hub_id else f"resnet_zoo/weights/{spec.path}"
        return cls(
            name=spec.name,
            source=source,
            preprocessing=spec.preprocessing,
            labels=labels,
            top1=spec.top1,
            license=spec.license,
            description=spec.description,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "labels": None if self.labels is None else list(self.labels),
            "top1": self.top1,
            "license": self.license,
            "description": self.description,
            **({"base_model": self.base_model} if self.base_model else {}),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "config.json") -> PretrainedInfo | None:
        """Read the ``pretrained`` object of a config.json; a malformed one is a CheckpointError."""
        if not data:
            return None
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: 'pretrained' must be an object, got {type(data).__name__}")
        data = dict(data)
        known = {
            k: data.pop(k) for k in ("name", "source", "top1", "license", "description", "base_model") if k in data
        }
        known = {k: v for k, v in known.items() if v is not None}
        pre = data.pop("preprocessing", None)
        labels = data.pop("labels", None)
        try:
            if pre is not None and not isinstance(pre, dict):
                raise TypeError("'preprocessing' must be an object")
            for key in ("name", "source", "license", "description", "base_model"):
                if known.get(key) is not None and not isinstance(known[key], str):
                    raise TypeError(f"{key!r} must be a string, got {_short(known[key])}")
            if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
                raise TypeError("'labels' must be a list of strings")
            if labels is not None and (len(labels) > MAX_LABELS or any(len(x) > MAX_LABEL_CHARS for x in labels)):
                raise ValueError(
                    f"'labels' must be at most {MAX_LABELS:,} names of at most "
                    f"{MAX_LABEL_CHARS} characters, got {len(labels):,} names"
                )
            return cls(
                preprocessing=Preprocessing(**pre) if pre else None,
                labels=tuple(labels) if labels else None,
                extra=data,
                **known,
            )
        except (TypeError, ValueError, ConfigError) as e:
            raise CheckpointError(f"{where}: malformed 'pretrained' object: {e}") from None


def data_path(name: str = "") -> Path:
    """Path of ``weights/<name>``, from a clone or from the installed package."""
    clone = Path(__file__).resolve().parent.parent / "weights"
    if (clone / "manifest.json").is_file():
        return clone / name if name else clone
    from importlib.resources import files

    # A namespace package: ask for a file inside it to get a real path (not a MultiplexedPath).
    packaged = Path(str(files("resnet_zoo._weights").joinpath("manifest.json"))).parent
    return packaged / name if name else packaged


def _parse_entry(name: str, raw: Any, where: str) -> WeightsSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: entry {name!r} must be a JSON object")
    if name.count(".") != 1:
        raise ConfigError(f"{where}: weights name {name!r} must be 'arch.tag'")
    data = dict(raw)
    known = set(WeightsSpec.__dataclass_fields__) - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: entry {name!r} has unknown field(s) {unknown}")
    for required in ("filename", "source"):
        if not data.get(required):
            raise ConfigError(f"{where}: entry {name!r} needs {required!r}")
    if bool(data.get("hf_hub_id")) == bool(data.get("path")):
        raise ConfigError(f"{where}: entry {name!r} needs exactly one of 'hf_hub_id' and 'path'")
    if data.get("path") and not data.get("sha256"):
        raise ConfigError(f"{where}: shipped weights {name!r} need their sha256")
    if data.get("sha256") and not _SHA256.match(data["sha256"]):
        raise ConfigError(f"{where}: entry {name!r} sha256 must be 64 lowercase hex digits")
    if data.get("revision") and not _COMMIT.match(data["revision"]):
        raise ConfigError(f"{where}: entry {name!r} revision must be a full 40-digit commit hash")
    pre = data.get("preprocessing", {})
    try:
        if not isinstance(pre, dict):
            raise TypeError("it must be an object")
        data["preprocessing"] = Preprocessing(**pre)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: entry {name!r} has malformed preprocessing: {e}") from None
    evaluations = data.get("evaluations", [])
    if not isinstance(evaluations, list) or not all(
        isinstance(e, dict) and isinstance(e.get("top1"), (int, float)) and e.get("data") and e.get("by")
        for e in evaluations
    ):
        raise ConfigError(
            f"{where}: entry {name!r} evaluations must be a list of "
            "{{'top1': number, 'data': str, 'by': str}} objects"
        )
    data["evaluations"] = tuple(evaluations)
    return WeightsSpec(name=name, **data)


@functools.lru_cache(maxsize=8)
def _load(path: str) -> dict[str, WeightsSpec]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"weights manifest {path} does not exist; unset {MANIFEST_ENV}?") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"weights manifest {path} is not valid UTF-8 JSON: {e}") from None
    except OSError as e:  # a directory, no permission, ...
        raise ConfigError(f"weights manifest {path} cannot be read: {e.strerror or e}") from None
    entries = raw.get("weights") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError(f"weights manifest {path} needs a top-level 'weights' object")
    specs = {name: _parse_entry(name, e, path) for name, e in entries.items()}
    defaults: dict[str, str] = {}
    for spec in specs.values():
        if spec.default:
            if spec.arch in defaults:
                raise ConfigError(f"{path}: {spec.arch} has two default weights, {defaults[spec.arch]} and {spec.name}")
            defaults[spec.arch] = spec.name
    return specs


def manifest_path() -> Path:
    override = os.environ.get(MANIFEST_ENV)
    return Path(override) if override else data_path("manifest.json")


def load_manifest() -> dict[str, WeightsSpec]:
    """Every published weights entry, by ``arch.tag`` name."""
    return _load(str(manifest_path()))


def weight_names() -> list[str]:
    return list(load_manifest())


def tags_of(arch: str) -> list[str]:
    return [s.tag for s in load_manifest().values() if s.arch == arch]


def default_tag(arch: str) -> str | None:
    specs = [s for s in load_manifest().values() if s.arch == arch]
    for s in specs:
        if s.default:
            return s.tag
    return specs[0].tag if len(specs) == 1 else None


def get_weights(arch: str, tag: str | None) -> WeightsSpec:
    """The manifest entry ``arch.tag`` (``tag=None``: the architecture's default)."""
    available = tags_of(arch)
    if tag is None:
        tag = default_tag(arch)
        if tag is None:
            raise UnknownModelError(
                f"no pretrained weights are published for {arch!r}"
                + (f"; choose a tag: {', '.join(available)}" if available else "")
                + ". Models with weights: resnet_zoo.list_models(pretrained=True); or pass "
                "pretrained='hf-hub:owner/repo' or a local .safetensors path"
            )
    spec = load_manifest().get(f"{arch}.{tag}")
    if spec is None:
        import difflib

        close = difflib.get_close_matches(f"{arch}.{tag}", weight_names(), n=3, cutoff=0.6)
        raise UnknownModelError(
            f"unknown weights tag {tag!r} for {arch!r}; "
            + (f"available tags: {', '.join(available)}" if available else "it has no published weights")
            + (f". Did you mean {', '.join(close)}?" if close else "")
        )
    return spec


def read_labels(filename: str) -> list[str]:
    """Class names, one per line, from ``weights/<filename>``."""
    path = data_path(filename)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"class names file {path} (named by the weights manifest) cannot be read: "
            f"{getattr(e, 'strerror', None) or e}"
        ) from None


def write_pins(path: Path, pins: dict[str, dict[str, Any]]) -> None:
    """Write revision/sha256/size into the manifest at ``path`` (atomically), keeping the rest."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    for name, values in pins.items():
        raw["weights"][name].update(values)
    write_text_atomic(path, json.dumps(raw, indent=2) + "\n")
    _load.cache_clear()
