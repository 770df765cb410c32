"""The Hugging Face Hub client: ask the Hub about a file, download it into the shared cache and
verify it; save and publish models. The only module that imports huggingface_hub (lazily, so
``import resnet_zoo`` stays cheap).

huggingface_hub's ``hf_hub_download`` joins the ETag and commit a server sends onto cache paths
before anything checks them, so the download is done here, over huggingface_hub's HTTP client
and in its cache layout (:mod:`.cache`), under the rules below: the HEAD's answer
checked before anything is written, every path confined to the cache, the body bounded and
paced (:class:`DownloadPace`; a stalled transfer keeps ``blobs/<etag>.incomplete``,
resumed by the next attempt and never served), online checked against the ETag just sent and
the manifest's pin, offline trusted only by the pin or a blob named by its hash. A failed check
removes the bad blob when it lies in ``blobs/``, and only the link otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from ..errors import (
    ConfigError,
    DownloadError,
    IntegrityError,
    ResNetZooError,
    UnknownModelError,
)
from ..util.atomic import atomic_write, replace_directory, staging_beside, write_text_atomic
from ..util.integrity import (
    check_revision,
    content_etag,
    is_commit,
    is_sha256,
    printable,
    sha256_file,
)
from ..util.progress import advance
from .cache import RepoCache, check_file
from .pace import DEADLINE_ENV, MIN_SPEED_ENV, WINDOW_ENV, DownloadPace

__all__ = [
    "DownloadPace",
    "FileMetadata",
    "download",
    "download_optional",
    "file_metadata",
    "save_pretrained",
    "push_to_hub",
    "upload_files",
    "DEADLINE_ENV",
    "MIN_SPEED_ENV",
    "WINDOW_ENV",
    "ALLOW_UNVERIFIED_ENV",
    "MAX_DOWNLOAD_BYTES",
]

log = logging.getLogger(__name__)

# --- What a Hub says: settings read at call time, the HEAD's answer, a blob's key, the body ---

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


def checked_metadata(meta: Any, label: str, max_size: int) -> FileMetadata:
    commit = meta.commit_hash
    if not is_commit(commit):
        raise DownloadError(
            f"{label}: the Hub's answer names commit {printable(str(commit))[:80]!r} "
            "(X-Repo-Commit), not a 40-digit commit hash: refused, nothing written"
        )
    etag = content_etag(meta.etag)
    if meta.etag and etag is None:
        log.debug("%s: ETag %r is not a content hash", label, meta.etag)
    size = meta.size
    if size is not None and not 0 <= size <= max_size:
        raise DownloadError(
            f"{label}: the Hub declares {size:,} bytes (X-Linked-Size), beyond the "
            f"{max_size:,} bytes a file of this kind may have: refused, nothing written"
        )
    return FileMetadata(commit, etag, size)


def is_hf_error(e: BaseException) -> bool:
    return type(e).__module__.startswith("huggingface_hub")


def unreachable(e: BaseException) -> bool:
    """The Hub did not answer (down, unreachable, timing out, a 5xx): a cached copy may serve."""
    if is_transport_error(e):
        return True
    response = getattr(e, "response", None)
    return response is not None and getattr(response, "status_code", 0) >= 500


def cached_copy(cache: RepoCache, revision: str | None, filename: str, pinned: str, label: str) -> Path | None:
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
            raise IntegrityError(
                f"{label}: the cached copy is named {printable(blob.name)[:80]!r}, not "
                "a content hash, and nothing is pinned, so it cannot be verified. Pin "
                f"it in the manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this cache"
            )
        log.warning("%s: loaded unverified from the cache because %s is set", label, ALLOW_UNVERIFIED_ENV)
        return snap
    ok, why, intact = check_file(snap, name, pinned)
    if not ok:
        if intact:
            cache.remove(snap)  # a good blob behind the wrong link: only the link goes
        else:
            cache.evict(snap)
        raise IntegrityError(
            f"{label}: {why}; the cached copy was removed. Retry the download online"
            + (
                ""
                if not pinned
                else "; if it persists, the published file changed: "
                "re-pin it with 'resnet-zoo weights pin' after checking its origin"
            )
        )
    return snap


def decoder(encoding: str | None, label: str):
    """A function from a raw chunk to its decoded pieces (each at most 1 MiB, so an inflating
    body is cut off before it is held in memory)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return lambda raw: (raw,)
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise DownloadError(
            f"{label}: the server sent the body with Content-Encoding "
            f"{printable(encoding)[:40]!r}; only gzip and deflate are read"
        )
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)

    def decode(raw: bytes) -> Iterator[bytes]:
        buf = raw
        while buf:
            try:
                piece = d.decompress(buf, 1 << 20)
            except zlib.error as e:
                raise DownloadError(f"{label}: the server's {encoding} body does not decode: {e}") from None
            yield piece
            buf = d.unconsumed_tail

    return decode


def write_body(
    chunks: Iterable[bytes],
    f: BinaryIO,
    *,
    encoding: str | None,
    written: int,
    bound: int,
    declared: bool,
    pace: DownloadPace,
    label: str,
    progress: Callable[[int], None],
) -> int:
    """Decode ``chunks`` (as they arrive) into ``f``, which holds ``written`` bytes, never past
    ``bound`` (the declared size when ``declared``): :class:`DownloadError` when the server sends
    more, after which the caller removes the part. Returns the bytes ``f`` holds."""
    decode = decoder(encoding, label)
    for raw in chunks:
        pace.check(len(raw))
        for piece in decode(raw):
            if written + len(piece) > bound:
                raise DownloadError(
                    f"{label}: the server sent more than the {bound:,} bytes "
                    f"{'it declared' if declared else 'a file of this kind may have'}"
                    " (a body longer than its size, or a compressed body that "
                    "inflates): stopped there, and nothing of it was kept"
                )
            f.write(piece)
            written += len(piece)
            progress(len(piece))
    return written


def blob_key(meta: FileMetadata, pinned: str, filename: str, label: str) -> tuple[str, bool]:
    """The name the downloaded blob is stored and checked under, and whether it is unverified:
    the content ETag, or the pin (which the ETag must not contradict); with neither, only the
    opt-in lets it through, under a name for the partial download only."""
    key, unverified = meta.etag, False
    if pinned:
        if key is not None and len(key) == 64 and key != pinned:
            raise IntegrityError(
                f"{label}: the Hub's ETag {key} differs from the pinned sha256 {pinned}: the published "
                "file changed. Nothing was downloaded; re-pin it with 'resnet-zoo weights pin' after "
                "checking its origin"
            )
        key = key or pinned
    if key is None:
        if not allow_unverified():
            raise IntegrityError(
                f"{label}: there is no pinned sha256 and the server's ETag is not a content hash (a "
                "mirror or proxy?), so the file cannot be verified; nothing was downloaded. Pin it in "
                f"the manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this server"
            )
        unverified = True  # a name for the partial download only; the blob is named by its sha256
        key = hashlib.sha256(f"unverified:{meta.commit}:{filename}".encode()).hexdigest()
    return key, unverified


_RETRIES = 3  # a dropped connection is resumed this many times within one download


class _NotOnHub(UnknownModelError):
    """The repo exists, the file does not (a 404 for the file itself)."""


def _where(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _translatable(e: BaseException) -> bool:
    """An error of huggingface_hub's, httpx's or the file system's, which :func:`_translate` words."""
    return is_transport_error(e) or is_hf_error(e) or isinstance(e, OSError)


def _commit_of_404(e: BaseException) -> str | None:
    """The X-Repo-Commit the Hub sent with a 404, as sent (checked by :func:`_translate`)."""
    response = getattr(e, "response", None)
    return response.headers.get("X-Repo-Commit") if response is not None else None


def _translate(
    e: BaseException, label: str, repo_id: str, filename: str, revision: str | None, where: Any = None
) -> ResNetZooError:
    """huggingface_hub's and httpx's errors as resnet_zoo's, one line each (``where``: the cache)."""
    from huggingface_hub import errors as hf_errors

    endpoint = hub_endpoint() or "default endpoint"
    if isinstance(e, hf_errors.RevisionNotFoundError):
        return UnknownModelError(f"revision {revision!r} of {repo_id!r} does not exist on the Hub ({endpoint})")
    if isinstance(e, hf_errors.RepositoryNotFoundError):
        return UnknownModelError(
            f"weights repository {repo_id!r} does not exist on the Hub ({endpoint}), "
            "or it is private or gated and no token was given"
        )
    if isinstance(e, hf_errors.RemoteEntryNotFoundError):
        commit = _commit_of_404(e)
        if commit is not None and not is_commit(commit):
            return DownloadError(
                f"{label}: the Hub's 404 names commit {printable(commit)[:80]!r} "
                "(X-Repo-Commit), not a 40-digit commit hash: refused, nothing written"
            )
        return _NotOnHub(f"{repo_id!r} has no file {filename!r} at revision {revision or 'main'}")
    if isinstance(e, hf_errors.HfHubHTTPError):
        return DownloadError(f"the Hub refused {label}: {one_line(e)}")
    if isinstance(e, PermissionError):
        return DownloadError(
            f"cannot write to the Hub cache ({e.filename or where}): "
            "permission denied. Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory"
        )
    if isinstance(e, OSError) and e.errno == 30:  # EROFS
        return DownloadError(
            f"cannot write to the Hub cache ({e.filename or where}): "
            "read-only file system. Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory"
        )
    if isinstance(e, OSError) and e.errno == 28:  # ENOSPC
        return DownloadError(
            f"no space left on the device holding the Hub cache {where} while "
            f"fetching {label}; free space or set HF_HUB_CACHE to another disk"
        )
    if is_transport_error(e) and type(e).__name__ in ("ConnectError", "ConnectTimeout"):
        return DownloadError(
            f"cannot reach the Hub ({endpoint}) to fetch {label} ({one_line(e)}), "
            f"and it is not in the cache {where}. Check the "
            "network, or set HF_HUB_OFFLINE=1 with a pre-filled cache"
        )
    return DownloadError(f"downloading {label} failed: {type(e).__name__}: {one_line(e)}")


@contextlib.contextmanager
def _translated(
    label: str, repo_id: str, filename: str, revision: str | None, where: str | None = None
) -> Iterator[None]:
    """Word an error of huggingface_hub's, httpx's or the file system's as the one-line
    ResNetZooError of :func:`_translate`; a ResNetZooError and anything else pass through."""
    try:
        yield
    except ResNetZooError:
        raise
    except Exception as e:
        if not _translatable(e):
            raise
        raise _translate(e, label, repo_id, filename, revision, where) from None


def _head(repo_id: str, filename: str, revision: str | None, token: Any, repo_type: str | None = None) -> Any:
    """One HEAD without retries (a down server is a fast, clear error)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint, repo_type=repo_type)
    return get_hf_file_metadata(url, token=token, endpoint=endpoint, retry_on_errors=False)


def file_metadata(
    repo_id: str, filename: str, *, revision: str | None = None, max_size: int = MAX_DOWNLOAD_BYTES, token: Any = None
) -> FileMetadata:
    """The Hub's commit, ETag and size of a file, checked, without downloading it."""
    revision = check_revision(revision)
    label = f"{repo_id}/{filename}"
    with _translated(label, repo_id, filename, revision):
        return checked_metadata(_head(repo_id, filename, revision, token), label, max_size)


# --- Downloading --------------------------------------------------------------------------------


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str = "",
    expected_size: int | None = None,
    max_size: int = MAX_DOWNLOAD_BYTES,
    force_download: bool = False,
    pace: DownloadPace | None = None,
    token: Any = None,
    local_files_only: bool = False,
    repo_type: str | None = None,
) -> Path:
    """Fetch ``filename`` of ``repo_id`` (a model repo, or ``repo_type="dataset"``) into the Hub
    cache (or find it there), verified; returns its snapshot path in the cache.

    Online the file is checked against the ETag the Hub sends for it, and against
    ``expected_sha256`` (a manifest's pin) when given; offline against the pin, or else the name
    of the blob its cache link leads to. ``max_size`` bounds what the server may declare and
    send. ``local_files_only`` reads the cache only, as ``HF_HUB_OFFLINE=1`` does for every call.
    Every failure is a :class:`~resnet_zoo.errors.ResNetZooError` saying what to do.
    """
    revision = check_revision(revision)
    if expected_sha256 and not is_sha256(expected_sha256):
        raise ConfigError(f"expected_sha256 must be 64 lowercase hex digits, got {expected_sha256!r}")
    label = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    pace = pace or DownloadPace.from_env(label)  # bad settings are refused before the Hub is asked
    where = _where(hub_cache_dir(cache_dir))
    cache = RepoCache(where, repo_id, repo_type)
    with _translated(label, repo_id, filename, revision, where):
        if offline_mode() or local_files_only:
            found = cached_copy(cache, revision, filename, expected_sha256, label)
            if found is None:
                why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE=1"
                raise DownloadError(
                    f"{why} and {label} is not in the cache {where}. Pre-fill the cache by "
                    f"loading the model once online (or 'hf download {repo_id} {filename}'), or "
                    "point HF_HUB_CACHE at a cache that has it"
                )
            return found
        try:
            meta = checked_metadata(_head(repo_id, filename, revision, token, repo_type), label, max_size)
        except ResNetZooError:
            raise
        except Exception as e:
            if not _translatable(e):
                raise
            error = _translate(e, label, repo_id, filename, revision, where)
            if isinstance(error, _NotOnHub) and (commit := _commit_of_404(e)):
                cache.write_ref(revision, commit)
                cache.mark_absent(commit, filename)  # so that an offline load knows it is absent
            if unreachable(e):
                found = cached_copy(cache, revision, filename, expected_sha256, label)
                if found is not None:
                    log.warning("%s: the Hub could not be reached (%s); using the cached copy", label, one_line(e))
                    return found
            raise error from None
        if expected_size is not None and meta.size is not None and meta.size != expected_size:
            raise IntegrityError(
                f"{label}: the Hub declares {meta.size:,} bytes, the manifest pins "
                f"{expected_size:,}: the published file changed. Nothing was "
                "downloaded; re-pin it with 'resnet-zoo weights pin' after checking its origin"
            )
        return _fetch(
            cache, meta, repo_id, filename, revision, expected_sha256, max_size, label, force_download, pace, token
        )


def _fetch(
    cache: RepoCache, meta: FileMetadata, repo_id: str, filename: str, revision: str | None, pinned: str,
    max_size: int, label: str, force: bool, pace: DownloadPace, token: Any,
) -> Path:  # fmt: skip
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import WeakFileLock

    key, unverified = blob_key(meta, pinned, filename, label)
    blob, lock = cache.blob(key), cache.lock(key)
    cache.cache.mkdir(lock.parent)
    if os.path.islink(lock):
        cache.remove(lock)  # a planted link: the lock file must never truncate its target
    with WeakFileLock(str(lock)):
        if os.path.lexists(blob) and (force or unverified or not cache.cache.regular_file(blob)):
            if not cache.cache.regular_file(blob):
                log.warning(
                    "%s in the Hub cache is not a regular file (a planted link?): removed; its target was not touched",
                    blob,
                )
            cache.remove(blob)
        elif os.path.lexists(blob):
            ok, why, _ = check_file(blob, key, pinned)
            if not ok:
                log.warning("%s: the cached blob is damaged (%s): downloading it again", label, why)
                cache.remove(blob)
        if not os.path.lexists(blob):
            part = cache.incomplete(key)
            cache.cache.mkdir(cache.blobs)
            url = hf_hub_url(
                repo_id, filename, revision=meta.commit, endpoint=hub_endpoint(), repo_type=cache.repo_type
            )
            _stream(cache, url, part, meta.size, max_size, pace, label, filename, token)
            ok, why, _ = check_file(part, "" if unverified else key, pinned)
            if not ok:
                cache.remove(part)
                raise IntegrityError(
                    f"{label}: {why} (the download was corrupted, or the file "
                    "changed); nothing was kept, retry the download"
                )
            if unverified:
                log.warning(
                    "%s: no pinned sha256 and no content ETag (a mirror or proxy?): loaded "
                    "unverified because %s is set",
                    label,
                    ALLOW_UNVERIFIED_ENV,
                )
                key = sha256_file(part)
                blob = cache.blob(key)
            cache.cache.move(part, blob)
        snap = cache.link(meta.commit, filename, key)
        cache.write_ref(revision, meta.commit)
    return snap


def _stream(
    cache: RepoCache,
    url: str,
    part: Path,
    size: int | None,
    max_size: int,
    pace: DownloadPace,
    label: str,
    filename: str,
    token: Any,
) -> None:
    """GET ``url`` into ``part``, resuming what it holds; never more than ``size`` (declared) or
    ``max_size`` bytes. A dropped connection is resumed up to ``_RETRIES`` times."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status
    from tqdm.auto import tqdm

    bound = size if size is not None else max_size
    session = get_session()
    failures = 0
    disable = True if constants.HF_HUB_DISABLE_PROGRESS_BARS else None
    with tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=filename[:40], disable=disable, leave=False
    ) as bar:
        while True:
            have = cache.cache.size(part)
            if have > bound:
                cache.remove(part)
                have = 0
            if size is not None and have == size:
                return
            headers = build_hf_headers(token=token)
            headers["Accept-Encoding"] = "identity"
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with session.stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
                ) as response:
                    if response.status_code == 416:  # the part is not a prefix the server knows
                        cache.remove(part)
                        failures += 1
                        if failures >= _RETRIES:
                            raise DownloadError(f"{label}: the server refused to resume the download")
                        continue
                    if response.status_code >= 400:
                        response.read()
                        hf_raise_for_status(response)
                    append = have > 0 and response.status_code == 206
                    written = have if append else 0
                    bar.reset(total=size)
                    bar.update(written)
                    pace.body_started()
                    try:
                        with cache.cache.open_write(part, append=append) as f:
                            # iter_raw: as it arrives (a chunk size would buffer a drip)
                            written = write_body(
                                response.iter_raw(),
                                f,
                                encoding=response.headers.get("Content-Encoding"),
                                written=written,
                                bound=bound,
                                declared=size is not None,
                                pace=pace,
                                label=label,
                                progress=lambda n: advance(bar, n),
                            )
                    except DownloadError:
                        cache.remove(part)
                        raise
                if size is None or written == size:
                    return
                reason = f"the body ended after {written:,} of {size:,} bytes"
            except ResNetZooError:
                raise
            except Exception as e:
                if not is_transport_error(e):
                    raise
                reason = f"the connection failed ({type(e).__name__}: {one_line(e)})"
            failures += 1
            if failures >= _RETRIES:
                raise DownloadError(
                    f"{label}: {reason}, {failures} times; the part received is kept "
                    "(never served) and resumed by the next attempt: retry"
                )
            log.info("%s: %s; resuming", label, reason)


def download_optional(repo_id: str, filename: str, **kwargs: Any) -> Path | None:
    """:func:`download`, or ``None`` when the Hub says the file does not exist.

    Online that is a 404 on the file; offline (``HF_HUB_OFFLINE=1``) it is the absence recorded in
    the cache when the Hub answered that 404 with its commit.
    """
    try:
        return download(repo_id, filename, **kwargs)
    except _NotOnHub:
        return None  # the server has just answered 404 for the file itself
    except DownloadError:
        if offline_mode() or kwargs.get("local_files_only"):
            cache = RepoCache(_where(hub_cache_dir(kwargs.get("cache_dir"))), repo_id)
            if cache.known_absent(check_revision(kwargs.get("revision")), filename):
                return None
        raise


# --- save_pretrained / push_to_hub through huggingface_hub's ModelHubMixin --------------------

_MIXIN_CLASS: type | None = None


def _mixin_class() -> type:
    """A ModelHubMixin subclass wrapping a resnet_zoo model (built once, on first use)."""
    global _MIXIN_CLASS
    if _MIXIN_CLASS is not None:
        return _MIXIN_CLASS
    from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin

    class ResNetZooHubModel(
        ModelHubMixin,
        library_name="resnet_zoo",
        tags=["image-classification", "resnet", "resnet_zoo"],
        paper_url="https://arxiv.org/abs/1512.03385",
    ):
        def __init__(
            self, tensors: dict[str, Any], card: tuple[dict[str, Any], str], extra: dict[str, Any] | None = None
        ) -> None:
            self.tensors = tensors
            self.card = card
            self.extra = extra or {}  # more JSON files beside config.json (a preprocessor config)

        def _save_pretrained(self, save_directory: Path) -> None:
            from safetensors.torch import save_file

            tensors = {k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}
            with atomic_write(save_directory / "model.safetensors") as tmp:
                save_file(tensors, str(tmp), metadata={"format": "pt"})
            for name, document in self.extra.items():
                write_text_atomic(save_directory / name, json.dumps(document, indent=2) + "\n")

        def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
            metadata, text = self.card
            data = ModelCardData(**{k: v for k, v in metadata.items() if v is not None})
            return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")

    _MIXIN_CLASS = ResNetZooHubModel
    return _MIXIN_CLASS


def save_pretrained(
    tensors: dict[str, Any], save_directory: str | os.PathLike, *, config: dict[str, Any],
    card: tuple[dict[str, Any], str], push_to_hub: bool = False, repo_id: str | None = None,
    extra: dict[str, Any] | None = None, **push_kwargs: Any,
) -> str | None:  # fmt: skip
    """Write config.json, ``tensors`` as model.safetensors, README.md and the ``extra`` JSON
    files (and optionally push them).

    The files are written into a directory beside ``save_directory`` that then takes its place
    in one step, so that a save killed at any moment leaves the previous save whole and
    loadable. A directory that holds other files too keeps them: there, each file of the save
    is replaced in turn."""
    wrapper = _mixin_class()(tensors, card, extra)
    directory = Path(save_directory)
    ours = {"config.json", "model.safetensors", "README.md", *(extra or {})}
    if directory.is_dir() and any(p.name not in ours for p in directory.iterdir()):
        (directory / "README.md").unlink(missing_ok=True)  # the mixin keeps an existing card
        wrapper.save_pretrained(directory, config=config)
        return _push_directory(directory, repo_id or directory.name, ours, **push_kwargs) if push_to_hub else None
    staging = staging_beside(directory)
    try:
        wrapper.save_pretrained(staging, config=config)
        replace_directory(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # what is left of a failed save
    if push_to_hub:
        return _push_directory(directory, repo_id or directory.name, ours, **push_kwargs)
    return None


def _push_directory(
    directory: Path, repo_id: str, names: Iterable[str], *, private: bool | None = None, token: Any = None,
    revision: str | None = None, branch: str | None = None, commit_message: str = "Upload a resnet_zoo model",
) -> str:  # fmt: skip
    """Upload the ``names`` of the saved model in ``directory`` (config.json, model.safetensors,
    the card, extra JSON files) as the model repo ``repo_id`` in one commit; returns the commit."""
    files: dict[str, Path | bytes] = {n: directory / n for n in names if (directory / n).is_file()}
    return upload_files(
        repo_id, files, repo_type="model", private=private, token=token, revision=revision or branch,
        commit_message=commit_message,
    )  # fmt: skip


def push_to_hub(
    tensors: dict[str, Any], repo_id: str, *, config: dict[str, Any], card: tuple[dict[str, Any], str],
    extra: dict[str, Any] | None = None, **kwargs: Any,
) -> str:  # fmt: skip
    """Upload ``tensors`` to the Hub as config.json + model.safetensors + README.md (+ ``extra``)
    in one commit (huggingface_hub's client, at the endpoint HF_ENDPOINT names when called);
    returns the commit hash."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        _mixin_class()(tensors, card, extra).save_pretrained(Path(d), config=config)
        return _push_directory(
            Path(d), repo_id, ("config.json", "model.safetensors", "README.md", *(extra or {})), **kwargs
        )


def upload_files(
    repo_id: str, files: dict[str, Path | bytes], *, repo_type: str = "dataset",
    stale: Callable[[str], bool] = lambda p: False, private: bool | None = None, token: Any = None,
    revision: str | None = None, commit_message: str = "Upload",
) -> str:  # fmt: skip
    """Create ``repo_id`` where it does not exist, then make one commit that adds ``files``
    (``{path in the repo: a local file, or bytes}``) and deletes the repo's files that ``stale`` names and
    ``files`` does not hold; returns the new commit's hash. A failure is a one-line
    :class:`~resnet_zoo.errors.DownloadError` naming the repo."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    check_revision(revision)
    label = f"{repo_type}s/{repo_id}" if repo_type != "model" else repo_id
    api = HfApi(endpoint=hub_endpoint(), token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        existing = api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
        operations: list[Any] = [
            CommitOperationAdd(name, data if isinstance(data, bytes) else str(data)) for name, data in files.items()
        ]
        operations += [CommitOperationDelete(p) for p in existing if stale(p) and p not in files]
        info = api.create_commit(
            repo_id, operations, commit_message=commit_message, repo_type=repo_type, revision=revision
        )
    except Exception as e:
        if isinstance(e, ResNetZooError) or not (is_hf_error(e) or is_transport_error(e)):
            raise
        raise DownloadError(f"uploading to {label} failed: {one_line(e)}") from None
    commit = info.oid
    if not is_commit(commit):
        raise DownloadError(f"uploading to {label}: the Hub answered the commit with {printable(str(commit))[:60]!r}")
    return commit
