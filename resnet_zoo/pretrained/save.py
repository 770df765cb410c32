"""Saving a model: config.json (the full config and where the weights came from), the
weights as safetensors, and a model card; the Hub upload goes through :mod:`.hub`."""

from __future__ import annotations

import os
from typing import Any, Protocol


from .._version import __version__
from ..config import ResNetConfig
from ..manifest import PretrainedInfo
from . import hub
from .files import FORMAT_VERSION

__all__ = ["config_document", "model_card", "save_pretrained", "push_to_hub"]



class SavedModel(Protocol):
    """What saving reads from a model (ResNetBase and ResNet have it)."""

    config: ResNetConfig
    arch_name: str | None
    pretrained_info: PretrainedInfo | None

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


def model_card(model: SavedModel, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A Hub model card: its metadata (YAML front matter) and its text (architecture,
    parameters, source, metrics, usage)."""
    info = model.pretrained_info
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
    model: SavedModel, save_directory: str | os.PathLike, *, push_to_hub: bool = False,
    repo_id: str | None = None, **push_kwargs: Any,
) -> str | None:
    document = config_document(model)
    return hub.save_pretrained(
        model, save_directory, config=document, card=model_card(model, document),
        push_to_hub=push_to_hub, repo_id=repo_id, **push_kwargs,
    )


def push_to_hub(model: SavedModel, repo_id: str, **kwargs: Any) -> str:
    """Upload config.json, model.safetensors and the model card to the Hub repo ``repo_id``."""
    document = config_document(model)
    return hub.push_to_hub(model, repo_id, config=document, card=model_card(model, document), **kwargs)
