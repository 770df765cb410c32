"""``resnet-zoo weights pin``: record the Hub's current commit, sha256 and size of published
weights in the manifest, each value checked before anything is written."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from ..errors import DownloadError, UnknownModelError
from ..manifest import load_manifest, manifest_path, write_pins
from ..util.integrity import sha256_file
from . import hub

__all__ = ["pin_weights"]

log = logging.getLogger(__name__)


def pin_weights(tags: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Resolve the Hub's current commit, sha256 and size of each tag; write them to the manifest
    (atomically, and only once every tag has been resolved and checked)."""
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
        # file_metadata has checked the commit (40 hex digits), the ETag and the size's bound.
        meta = hub.file_metadata(spec.hf_hub_id, spec.filename, revision="main")
        if meta.size is None:
            raise DownloadError(f"{name}: the Hub did not say the size of {spec.hf_hub_id}/{spec.filename}")
        sha = meta.etag if meta.etag is not None and len(meta.etag) == 64 else ""
        # Not an LFS file (its ETag is a git sha1, or a mirror's opaque tag): download it at the
        # commit just named, verified against that ETag, and hash it.
        path = None if sha else hub.download(spec.hf_hub_id, spec.filename, revision=meta.commit)
        if path is not None:
            sha = sha256_file(path)
            if path.stat().st_size != meta.size:
                raise DownloadError(
                    f"{name}: the Hub declared {meta.size:,} bytes, the file has {path.stat().st_size:,}"
                )
        pins[name] = {"revision": meta.commit, "sha256": sha, "size": meta.size}
        log.info("pinned %s at %s (%s bytes)", name, meta.commit, meta.size)
    write_pins(manifest_path(), pins)
    return pins
