"""Rewrite every shipped weights/<name>/model.safetensors in resnet_zoo's current key layout
(torchvision's names) and re-pin its sha256 and size in weights/manifest.json.

The tensors and the file's metadata are kept; only the names change, through the same
converter that loads files of the older layout (``convert_state_dict``). Run from the clone:
``python scripts/rekey_weights.py``; a file already in the current layout is left as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from shipping import MANIFEST, ROOT, shipped_entry  # noqa: E402

from resnet_zoo import ResNetConfig, convert_state_dict  # noqa: E402
from resnet_zoo.util.atomic import atomic_write  # noqa: E402


def rekey(directory: Path) -> bool:
    """Re-key one shipped directory; whether its file changed."""
    path = directory / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = ResNetConfig.from_dict(json.loads((directory / "config.json").read_text())["config"])
    renamed = convert_state_dict(tensors, n_blocks=config.n_blocks)
    if sorted(renamed) == sorted(tensors):
        return False
    with atomic_write(path) as tmp:
        save_file(dict(sorted(renamed.items())), str(tmp), metadata=metadata)
    return True


def main() -> None:
    manifest = json.loads(MANIFEST.read_text())
    for name, entry in manifest["weights"].items():
        if not entry.get("path"):
            continue
        if rekey(ROOT / "weights" / entry["path"]):
            fresh = shipped_entry(entry["path"])
            entry.update(sha256=fresh["sha256"], size=fresh["size"])
            print(f"{name}: re-keyed, sha256 {entry['sha256']}")
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
