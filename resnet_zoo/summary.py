"""Facts about a registered model: parameters, multiply-accumulates, feature maps.

Everything is computed on the meta device: no memory for weights, no random init, no data.
Used by ``resnet-zoo info`` and the README's model table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .factory import create
from .manifest import load_manifest
from .registry import get_entry, list_models

__all__ = ["ModelSummary", "count_macs", "summarize", "model_table_markdown"]


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on an input of ``input_shape``.

    Counted by torch's own ``FlopCounterMode`` (a multiply-accumulate is its 2 FLOPs), which
    counts convolutions and matrix products: what torchvision and timm report as "GFLOPS".
    Batch norm, ReLU, pooling and the residual additions are left out, as they do. Works on
    the meta device (shapes only).
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape, device=device))
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    macs: int
    input_size: int
    # (channels, reduction) of each map of forward_intermediates: the stem, then every stage.
    feature_maps: tuple[tuple[int, int], ...]
    description: str

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params": self.params,
            "macs": self.macs,
            "input_size": self.input_size,
            "feature_maps": [{"channels": c, "reduction": r} for c, r in self.feature_maps],
        }


def summarize(name: str) -> ModelSummary:
    """Parameters (with head), MACs at the native input size and the feature maps of ``name``."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = create(name)
    params = sum(p.numel() for p in model.parameters())
    size = entry.input_size
    macs = count_macs(model.eval(), (1, entry.config.img_channels, size, size))
    maps = tuple((f.channels, f.reduction) for f in model.feature_info)
    return ModelSummary(entry.name, params, macs, size, maps, entry.description)


def model_table_markdown(names: list[str] | None = None) -> str:
    """The README's model table, one row per registered name."""
    rows = [
        "| name | params | GMACs | input | feature channels (stem, stages) | description |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name in names if names is not None else list_models():
        s = summarize(name)
        chans = ", ".join(str(c) for c, _ in s.feature_maps)
        rows.append(f"| `{s.name}` | {s.params:,} | {s.gmacs:.2f} | {s.input_size} | {chans} | {s.description} |")
    return "\n".join(rows) + "\n"


_WEIGHTS_COLUMNS = ("weights", "where", "top-1 % (publisher)", "top-1 % (measured here)",
                    "input, crop_pct, interpolation", "license", "default", "pinned")  # fmt: skip


def weights_table(fmt: str = "text") -> str:
    """The published weights (the manifest) as a table: ``fmt="text"`` for the terminal
    (``resnet-zoo weights list``), ``"markdown"`` for the README (numbered footnotes name the
    source and data of every accuracy figure)."""

    if fmt not in ("text", "markdown"):
        raise ValueError(f"fmt must be 'text' or 'markdown', got {fmt!r}")
    md = fmt == "markdown"
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f" [{notes.index(text) + 1}]" if md else ""

    header = list(_WEIGHTS_COLUMNS)
    rows = []
    for name, s in load_manifest().items():
        p = s.preprocessing
        top1 = "-" if s.top1 is None else f"{s.top1:.3f}" + (note(s.top1_source) if s.top1_source else "")
        ours = "; ".join(f"{e['top1']:.2f}" + note(f"{e['data']}, by `{e['by']}`") for e in s.evaluations) or "-"
        if md:
            where = (
                f"[{s.hf_hub_id}](https://huggingface.co/{s.hf_hub_id})"
                if s.hf_hub_id
                else f"shipped in `weights/{s.path}`"
            )
        else:
            where = s.hf_hub_id or f"shipped: weights/{s.path}"
        rows.append(
            [
                f"`{name}`" if md else name,
                where,
                top1,
                ours,
                f"{p.input_size}, {p.crop_pct}, {p.interpolation}",
                s.license,
                "yes" if s.default else "",
                "yes" if s.pinned else "no",
            ]
        )
    if md:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---:|---:|---|---|:---:|:---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
        lines += [f"[{i + 1}] {text}  " for i, text in enumerate(notes)]
        return "\n".join(lines).rstrip() + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(
        "publisher: the publisher's figure; measured here: by this project "
        "(`resnet-zoo weights list --json` names the data of each)"
    )
    return "\n".join(lines) + "\n"
