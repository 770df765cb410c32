"""What every ship_*.py script shares: the manifest entry of a directory shipped in weights/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "weights" / "manifest.json"


def shipped_entry(name: str, **fields: Any) -> dict[str, Any]:
    """The manifest entry of weights/<name>/model.safetensors: pinned to its sha256 and size,
    plus ``fields`` (default, num_classes, labels, top1, evaluations, license, ...)."""
    from resnet_zoo.pretrained.hub import sha256_file

    weights = ROOT / "weights" / name / "model.safetensors"
    return {
        "hf_hub_id": "",
        "path": name,
        "filename": "model.safetensors",
        "source": "resnet_zoo",
        "revision": "",
        "sha256": sha256_file(weights),
        "size": weights.stat().st_size,
        **fields,
    }


def update_manifest(entries: dict[str, dict[str, Any]], *, default_for: str | None = None) -> None:
    """Write ``entries`` into weights/manifest.json; ``default_for`` (an architecture) loses its
    other defaults first, so that it keeps exactly one."""
    manifest = json.loads(MANIFEST.read_text())
    if default_for is not None:
        for name, other in manifest["weights"].items():
            if name.split(".")[0] == default_for:
                other["default"] = False
    manifest["weights"].update(entries)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
