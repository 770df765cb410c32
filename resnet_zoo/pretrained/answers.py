"""What a Hub server says, checked before anything uses it, and the settings a download reads
at call time. Nothing here imports huggingface_hub (only :mod:`.hub` does): these are the
rules, :mod:`.hub` the client.

- the environment: ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_HUB_CACHE`` and the opt-in for
  unverifiable servers;
- the answer to a HEAD (:func:`checked_metadata`: a 40-digit commit, a content-hash ETag, a
  size within bounds);
- a body (:func:`write_body`: decoded piece by piece, bounded, paced);
- a cached copy (:func:`cached_copy`: trusted only by its pin or its blob's hash name).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from ..errors import DownloadError, IntegrityError
from ..util.integrity import content_etag, is_commit, printable
from .cache import RepoCache, check_file
from .pace import DownloadPace

__all__ = ["ALLOW_UNVERIFIED_ENV", "MAX_DOWNLOAD_BYTES", "FileMetadata", "offline_mode", "allow_unverified",
           "hub_endpoint", "hub_cache_dir", "one_line", "is_transport_error", "is_hf_error", "unreachable",
           "checked_metadata", "blob_key", "decoder", "write_body", "cached_copy"]

log = logging.getLogger("resnet_zoo.pretrained.hub")  # one logger for the Hub client's messages

_TRUE = {"1", "on", "yes", "true"}
# Opt-in for servers whose ETags are not content hashes and whose files are not pinned.
ALLOW_UNVERIFIED_ENV = "RESNET_ZOO_ALLOW_UNVERIFIED"
# No ResNet weights file comes near this (wide_resnet101_2 in float32 is 0.5 GB); a server
# declaring more is refused before a byte is written.
MAX_DOWNLOAD_BYTES = 4 << 30


def offline_mode() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE


def allow_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in _TRUE


def hub_endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str | None:
    if cache_dir is not None:
        return str(cache_dir)
    return os.environ.get("HF_HUB_CACHE") or None


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return printable(text[0] if text else type(e).__name__)[:300]


def is_transport_error(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0].startswith("httpx")


@dataclass(frozen=True)
class FileMetadata:
    """The Hub's answer to a HEAD, checked: ``commit`` is 40 hex digits, ``etag`` a content hash
    or ``None`` (a mirror's opaque ETag), ``size`` a number of bytes within the bound or ``None``."""

    commit: str
    etag: str | None
    size: int | None


def checked_metadata(meta: Any, what: str, max_size: int) -> FileMetadata:
    commit = meta.commit_hash
    if not is_commit(commit):
        raise DownloadError(f"{what}: the Hub's answer names commit {printable(str(commit))[:80]!r} "
                            "(X-Repo-Commit), not a 40-digit commit hash: refused, nothing written")
    etag = content_etag(meta.etag)
    if meta.etag and etag is None:
        log.debug("%s: ETag %r is not a content hash", what, meta.etag)
    size = meta.size
    if size is not None and not 0 <= size <= max_size:
        raise DownloadError(f"{what}: the Hub declares {size:,} bytes (X-Linked-Size), beyond the "
                            f"{max_size:,} bytes a file of this kind may have: refused, nothing written")
    return FileMetadata(commit, etag, size)


def is_hf_error(e: BaseException) -> bool:
    return type(e).__module__.startswith("huggingface_hub")


def unreachable(e: BaseException) -> bool:
    """The Hub did not answer (down, unreachable, timing out, a 5xx): a cached copy may serve."""
    if is_transport_error(e):
        return True
    response = getattr(e, "response", None)
    return response is not None and getattr(response, "status_code", 0) >= 500


def cached_copy(cache: RepoCache, revision: str | None, filename: str, pinned: str, what: str) -> Path | None:
    """The cached copy of ``filename`` at ``revision``, verified by the pin or its blob's name;
    ``None`` when the cache has none."""
    commit = cache.commit_of(revision)
    if commit is None:
        return None
    snap = cache.snapshot(commit, filename)
    try:
        blob = cache.linked_blob(commit, filename)
    except IntegrityError:
        cache.evict(snap)
        raise
    if blob is None:
        return None
    name = content_etag(blob.name) or ""
    if not pinned and not name:
        if not allow_unverified():
            raise IntegrityError(f"{what}: the cached copy is named {printable(blob.name)[:80]!r}, not "
                                 "a content hash, and nothing is pinned, so it cannot be verified. Pin "
                                 f"it in the manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this cache")
        log.warning("%s: loaded unverified from the cache because %s is set", what, ALLOW_UNVERIFIED_ENV)
        return snap
    ok, why, intact = check_file(snap, name, pinned)
    if not ok:
        if intact:
            cache.remove(snap)  # a good blob behind the wrong link: only the link goes
        else:
            cache.evict(snap)
        raise IntegrityError(f"{what}: {why}; the cached copy was removed. Retry the download online"
                             + ("" if not pinned else "; if it persists, the published file changed: "
                                "re-pin it with 'resnet-zoo weights pin' after checking its origin"))
    return snap


def decoder(encoding: str | None, what: str):
    """A function from a raw chunk to its decoded pieces (each at most 1 MiB, so an inflating
    body is cut off before it is held in memory)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return lambda raw: (raw,)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise DownloadError(f"{what}: the server sent the body with Content-Encoding "
                            f"{printable(encoding)[:40]!r}; only gzip and deflate are read")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)

    def decode(raw: bytes) -> Iterator[bytes]:
        buf = raw
        while buf:
            try:
                piece = d.decompress(buf, 1 << 20)
            except zlib.error as e:
                raise DownloadError(f"{what}: the server's {encoding} body does not decode: {e}") from None
            yield piece
            buf = d.unconsumed_tail

    return decode


def write_body(chunks: Iterable[bytes], f: BinaryIO, *, encoding: str | None, written: int, bound: int,
               declared: bool, pace: DownloadPace, what: str, progress: Callable[[int], None]) -> int:
    """Decode ``chunks`` (as they arrive) into ``f``, which holds ``written`` bytes, never past
    ``bound`` (the declared size when ``declared``): :class:`DownloadError` when the server sends
    more, after which the caller removes the part. Returns the bytes ``f`` holds."""
    decode = decoder(encoding, what)
    for raw in chunks:
        pace.check(len(raw))
        for piece in decode(raw):
            if written + len(piece) > bound:
                raise DownloadError(
                    f"{what}: the server sent more than the {bound:,} bytes "
                    f"{'it declared' if declared else 'a file of this kind may have'}"
                    " (a body longer than its size, or a compressed body that "
                    "inflates): stopped there, and nothing of it was kept")
            f.write(piece)
            written += len(piece)
            progress(len(piece))
    return written


def blob_key(meta: FileMetadata, pinned: str, filename: str, what: str) -> tuple[str, bool]:
    """The name the downloaded blob is stored and checked under, and whether it is unverified:
    the content ETag, or the pin (which the ETag must not contradict); with neither, only the
    opt-in lets it through, under a name for the partial download only."""
    key, unverified = meta.etag, False
    if pinned:
        if key is not None and len(key) == 64 and key != pinned:
            raise IntegrityError(
                f"{what}: the Hub's ETag {key} differs from the pinned sha256 {pinned}: the published "
                "file changed. Nothing was downloaded; re-pin it with 'resnet-zoo weights pin' after "
                "checking its origin")
        key = key or pinned
    if key is None:
        if not allow_unverified():
            raise IntegrityError(
                f"{what}: there is no pinned sha256 and the server's ETag is not a content hash (a "
                "mirror or proxy?), so the file cannot be verified; nothing was downloaded. Pin it in "
                f"the manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this server")
        unverified = True  # a name for the partial download only; the blob is named by its sha256
        key = hashlib.sha256(f"unverified:{meta.commit}:{filename}".encode()).hexdigest()
    return key, unverified
