"""Saving a model: config.json (the full config and where the weights came from), the
weights as safetensors, and a model card; the Hub upload goes through :mod:`.hub`."""

from __future__ import annotations

import os
from typing import Any, Protocol

from .._version import __version__
from ..config import ResNetConfig
from ..errors import ConfigError
from ..manifest import PretrainedInfo
from ..registry import get_entry
from ..util.integrity import check_repo_id
from . import hub
from .convert import TIMM_ARCHS, export_state_dict
from .files import FORMAT_VERSION

__all__ = ["SAVE_LAYOUTS", "config_document", "model_card", "save_pretrained", "push_to_hub", "timm_config_document"]


class SavedModel(Protocol):
    """What saving reads from a model (ResNetBase and ResNet have it)."""

    config: ResNetConfig
    arch_name: str | None
    pretrained_info: PretrainedInfo | None
    pretrained_cfg: Any  # timm's mapping over pretrained_info (timm_api.PretrainedCfg)

    def parameters(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...


def config_document(model: SavedModel) -> dict[str, Any]:
    """The config.json of a model: the library, format, full config, name and weights info."""
    info = model.pretrained_info
    return {
        "library": "resnet_zoo",
        "format_version": FORMAT_VERSION,
        "resnet_zoo_version": __version__,
        "architecture": model.arch_name,
        "config": model.config.to_dict(),
        "pretrained": None if info is None else info.to_dict(),
    }


def _hub_id(value: str | None) -> str | None:
    """``value`` where it is a Hub repo id (``owner/name``), else None: a published tag
    (``resnet50.tv_in1k``) or a local path is not, and the Hub refuses a card that says so."""
    if not value or os.path.exists(value):
        return None
    try:
        return check_repo_id(value)
    except ConfigError:
        return None


def _card_metadata(info: PretrainedInfo | None, arch: str) -> dict[str, Any]:
    """The card's YAML: library, licence, tags, ``base_model`` (a Hub id only) and, for a model
    trained or fine-tuned here, a ``model-index`` with its held-out accuracy."""
    metadata: dict[str, Any] = {
        "library_name": "resnet_zoo",
        "license": (info.license or None) if info else None,
        "tags": ["image-classification", "resnet", "resnet_zoo"],
        "pipeline_tag": "image-classification",
        "base_model": _hub_id(info.base_model) if info else None,
    }
    accuracy = info.extra.get("heldout_accuracy") if info else None
    dataset = info.extra.get("dataset") if info else None
    if info is not None and isinstance(accuracy, float) and isinstance(dataset, str):
        images = info.extra.get("heldout_images")
        metadata["model-index"] = [
            {
                "name": f"{arch} ({dataset})",
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "Image Classification"},
                        "dataset": {
                            "type": "imagefolder" if dataset == "folder" else dataset,
                            "name": dataset,
                            "split": "held-out",
                        },
                        "metrics": [
                            {
                                "type": "accuracy",
                                "value": round(accuracy, 6),
                                "name": "held-out accuracy"
                                + (f" ({images} images)" if isinstance(images, int) else ""),
                            }
                        ],
                    }
                ],
            }
        ]
    return metadata


def model_card(model: SavedModel, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A Hub model card: its metadata (YAML front matter) and its text (architecture,
    parameters, source, metrics, usage)."""
    info = model.pretrained_info
    arch = document.get("architecture") or "custom ResNet"
    params = sum(p.numel() for p in model.parameters())
    metadata = _card_metadata(info, arch)
    lines = [
        f"# {arch} (resnet_zoo)",
        "",
        "A ResNet (He et al. 2016, https://arxiv.org/abs/1512.03385) saved by resnet_zoo: "
        "`config.json` describes the network completely, `model.safetensors` holds the weights.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{arch}` |",
        f"| parameters | {params:,} |",
        f"| classes | {model.config.num_classes} |",
        f"| input channels | {model.config.img_channels} |",
    ]
    if info is not None and info.base_model:
        lines[4:4] = [
            f"Fine-tuned from `{info.base_model}`: a new head for {model.config.num_classes} classes on its body.",
            "",
        ]
        lines.append(f"| fine-tuned from | `{info.base_model}` |")
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
    if info is not None and isinstance(notice, str) and notice.strip():
        lines += [
            "",
            "## Licence",
            "",
            f"Licence: {info.license or 'see below'}. The original notice, reproduced as it asks:",
            "",
            "```",
            notice.strip(),
            "```",
        ]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import resnet_zoo",
        'model = resnet_zoo.ResNet.from_pretrained("<this directory or owner/repo>").eval()',
        "```",
        "",
    ]
    return metadata, "\n".join(lines)


SAVE_LAYOUTS = ("resnet_zoo", "timm", "transformers")
# PIL's resampling numbers, which transformers' image processors store.
_PIL_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3}


def timm_config_document(model: SavedModel) -> dict[str, Any]:
    """The config.json that ``timm.create_model("local-dir:...")`` / ``("hf-hub:...")`` reads:
    the architecture timm builds, the head, and the weights' preprocessing as timm keys."""
    cfg = model.pretrained_cfg
    c, h, w = cfg["input_size"]
    pretrained = {
        k: cfg[k]
        for k in ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std", "num_classes", "pool_size")
        if cfg[k] is not None
    }
    pretrained.update(first_conv="conv1", classifier="fc")  # timm's names for the same modules
    if cfg["license"]:
        pretrained["license"] = cfg["license"]
    document: dict[str, Any] = {
        "architecture": model.arch_name,
        "num_classes": model.config.num_classes,
        "num_features": model.config.num_features,
        "global_pool": model.config.global_pool,
        "pretrained_cfg": {k: list(v) if isinstance(v, tuple) else v for k, v in pretrained.items()},
    }
    if c != 3:
        document["model_args"] = {"in_chans": c}
    if cfg["label_names"]:
        document["label_names"] = list(cfg["label_names"])
    return document


def _timm_card(model: SavedModel, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    metadata, text = model_card(model, config_document(model))
    metadata = {**metadata, "library_name": "timm", "tags": ["image-classification", "timm", "resnet", "resnet_zoo"]}
    arch = document["architecture"]
    use = text.index("## Use")
    text = text[:use] + "\n".join(
        [
            "## Use",
            "",
            f"Saved by resnet_zoo in timm's layout: timm builds `{arch}` and loads these weights.",
            "",
            "```python",
            "import timm",
            'model = timm.create_model("hf-hub:<owner/repo>", pretrained=True)  # or "local-dir:<directory>"',
            "```",
            "",
        ]
    )
    return metadata, text


def transformers_documents(model: SavedModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """transformers' config.json (``ResNetForImageClassification``, ``id2label`` from the
    model's class names) and preprocessor_config.json (``ConvNextImageProcessor``, whose
    shortest-edge resize by ``1 / crop_pct`` and centre crop are resnet_zoo's preprocessing)."""
    c, cfg = model.config, model.pretrained_cfg
    labels = list(cfg["label_names"] or [f"LABEL_{i}" for i in range(c.num_classes)])
    config = {
        "model_type": "resnet",
        "architectures": ["ResNetForImageClassification"],
        "num_channels": c.img_channels,
        "embedding_size": c.stem_out_channels,
        "hidden_sizes": list(c.n_channels),
        "depths": list(c.n_blocks),
        "layer_type": "basic" if c.bottlenecks is None else "bottleneck",
        "hidden_act": "relu",
        "downsample_in_first_stage": False,
        "downsample_in_bottleneck": False,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    p = cfg.preprocessing
    processor = {
        "image_processor_type": "ConvNextImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": p.input_size},
        "crop_pct": p.crop_pct,
        "resample": _PIL_RESAMPLE[p.interpolation],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(p.mean),
        "image_std": list(p.std),
    }
    return config, processor


def _layout_of(
    model: SavedModel, layout: str
) -> tuple[dict[str, Any], dict[str, Any], tuple[dict[str, Any], str], dict[str, Any]]:
    """(tensors, config.json, card, more JSON files) of ``model`` saved in ``layout``."""

    if layout not in SAVE_LAYOUTS:
        raise ConfigError(f"layout must be one of {list(SAVE_LAYOUTS)}, got {layout!r}")
    if layout == "resnet_zoo":
        document = config_document(model)
        return model.state_dict(), document, model_card(model, document), {}
    if layout == "transformers":
        if not model.config.num_classes:
            raise ConfigError(
                "layout='transformers' saves a classifier (ResNetForImageClassification): num_classes is 0"
            )
        tensors = export_state_dict(model, "transformers")  # refuses what transformers cannot build
        document, processor = transformers_documents(model)
        metadata, text = model_card(model, config_document(model))
        metadata = {**metadata, "library_name": "transformers"}
        return tensors, document, (metadata, text), {"preprocessor_config.json": processor}
    arch = model.arch_name
    registered = get_entry(arch).config if arch in TIMM_ARCHS else None
    if (
        registered is None
        or model.config.replace(
            num_classes=registered.num_classes,
            img_channels=registered.img_channels,
            zero_init_residual=registered.zero_init_residual,
            global_pool=registered.global_pool,
            drop_rate=registered.drop_rate,
            drop_path_rate=registered.drop_path_rate,
        )
        != registered
    ):
        raise ConfigError(
            f"layout='timm' needs one of timm's ResNets as registered here "
            f"({', '.join(TIMM_ARCHS)}); {arch or 'this custom model'!s} is not one. "
            "Save it in resnet_zoo's layout and load it with resnet_zoo"
        )
    tensors = export_state_dict(model, "timm")
    document = timm_config_document(model)
    return tensors, document, _timm_card(model, document), {}


def save_pretrained(
    model: SavedModel,
    save_directory: str | os.PathLike,
    *,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    layout: str = "resnet_zoo",
    **push_kwargs: Any,
) -> str | None:
    tensors, document, card, extra = _layout_of(model, layout)
    return hub.save_pretrained(
        tensors,
        save_directory,
        config=document,
        card=card,
        push_to_hub=push_to_hub,
        repo_id=repo_id,
        extra=extra,
        **push_kwargs,
    )


def push_to_hub(model: SavedModel, repo_id: str, *, layout: str = "resnet_zoo", **kwargs: Any) -> str:
    """Upload config.json, model.safetensors and the model card to the Hub repo ``repo_id``."""
    tensors, document, card, extra = _layout_of(model, layout)
    return hub.push_to_hub(tensors, repo_id, config=document, card=card, extra=extra, **kwargs)
