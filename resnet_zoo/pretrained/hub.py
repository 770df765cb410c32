"""The Hugging Face Hub client: ask the Hub about a file, download it into the shared cache and
verify it; save and publish models. The only module that imports huggingface_hub (lazily, so
``import resnet_zoo`` stays cheap).

What a server says is untrusted input. huggingface_hub's ``hf_hub_download`` joins the ETag and
the commit a server sends onto cache paths before anything checks them, so the download is done
here, over huggingface_hub's HTTP client and in its cache layout (:mod:`.cache`):

* the answer to the HEAD is checked before anything is written: the commit must be 40 hex
  digits, the ETag a content hash (an LFS file's sha256, a small file's git blob sha1) or the
  file pinned in the manifest, the declared size within the file's bound;
* every path is confined to the cache (:class:`~resnet_zoo.integrity.Confined`);
* the body is bounded: a server that sends more than the declared size (a gzip body that
  inflates included) is cut off and nothing of it kept;
* online, a file is checked against the ETag the Hub has just sent (and the manifest's pin),
  never against a name found in the cache; offline, an unpinned file is trusted only if its link
  leads into this repo's ``blobs/``, and is then as trustworthy as the cache itself;
* a failed check removes the bad blob when it lies in ``blobs/``, and only the link otherwise.

A download is paced (:class:`~.pace.DownloadPace`): slower than ``RESNET_ZOO_DOWNLOAD_MIN_SPEED``
bytes/s over ``RESNET_ZOO_DOWNLOAD_SPEED_WINDOW`` seconds, or longer than
``RESNET_ZOO_DOWNLOAD_DEADLINE`` seconds, it stops with a :class:`DownloadError`; what was
received stays as ``blobs/<etag>.incomplete``, resumed by the next attempt and never served.
Files are fetched over HTTP (the Hub redirects Xet-backed files to a plain download).

``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and ``HF_TOKEN`` are read at call time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, DownloadError, IntegrityError, ResNetZooError, UnknownModelError
from ..integrity import check_revision, content_etag, is_commit, is_sha256, printable, sha256_file
from .cache import RepoCache, check_file
from .pace import DownloadPace

__all__ = [
    "download",
    "download_optional",
    "file_metadata",
    "FileMetadata",
    "offline_mode",
    "hub_cache_dir",
    "save_pretrained",
    "push_to_hub",
    "DownloadPace",
    "MAX_DOWNLOAD_BYTES",
    "ALLOW_UNVERIFIED_ENV",
]

log = logging.getLogger(__name__)

_TRUE = {"1", "on", "yes", "true"}
# Opt-in for servers whose ETags are not content hashes and whose files are not pinned.
ALLOW_UNVERIFIED_ENV = "RESNET_ZOO_ALLOW_UNVERIFIED"
# No ResNet weights file comes near this (wide_resnet101_2 in float32 is 0.5 GB); a server
# declaring more is refused before a byte is written.
MAX_DOWNLOAD_BYTES = 4 << 30
_RETRIES = 3  # a dropped connection is resumed this many times within one download


class _NotOnHub(UnknownModelError):
    """The repo exists, the file does not (a 404 for the file itself)."""


def offline_mode() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE


def _allow_unverified() -> bool:
    return os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in _TRUE


def hub_endpoint() -> str | None:
    value = os.environ.get("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> str | None:
    if cache_dir is not None:
        return str(cache_dir)
    return os.environ.get("HF_HUB_CACHE") or None


def _where(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return printable(text[0] if text else type(e).__name__)[:300]


def _is_transport_error(e: BaseException) -> bool:
    return type(e).__module__.split(".")[0].startswith("httpx")


# --- What the Hub says about a file -------------------------------------------------------------

@dataclass(frozen=True)
class FileMetadata:
    """The Hub's answer to a HEAD, checked: ``commit`` is 40 hex digits, ``etag`` a content hash
    or ``None`` (a mirror's opaque ETag), ``size`` a number of bytes within the bound or ``None``."""

    commit: str
    etag: str | None
    size: int | None


def _checked_metadata(meta: Any, what: str, max_size: int) -> FileMetadata:
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


def _translatable(e: BaseException) -> bool:
    """An error of huggingface_hub's, httpx's or the file system's, which :func:`_translate` words."""
    return _is_transport_error(e) or _is_hf_error(e) or isinstance(e, OSError)


def _commit_of_404(e: BaseException) -> str | None:
    """The X-Repo-Commit the Hub sent with a 404, as sent (checked by :func:`_translate`)."""
    response = getattr(e, "response", None)
    return response.headers.get("X-Repo-Commit") if response is not None else None


def _translate(e: BaseException, what: str, repo_id: str, filename: str, revision: str | None,
               where: Any = None) -> ResNetZooError:
    """huggingface_hub's and httpx's errors as resnet_zoo's, one line each (``where``: the cache)."""
    from huggingface_hub import errors as hf_errors

    endpoint = hub_endpoint() or "default endpoint"
    if isinstance(e, hf_errors.RevisionNotFoundError):
        return UnknownModelError(f"revision {revision!r} of {repo_id!r} does not exist on the Hub ({endpoint})")
    if isinstance(e, hf_errors.RepositoryNotFoundError):
        return UnknownModelError(f"weights repository {repo_id!r} does not exist on the Hub ({endpoint}), "
                                 "or it is private or gated and no token was given")
    if isinstance(e, hf_errors.RemoteEntryNotFoundError):
        commit = _commit_of_404(e)
        if commit is not None and not is_commit(commit):
            return DownloadError(f"{what}: the Hub's 404 names commit {printable(commit)[:80]!r} "
                                 "(X-Repo-Commit), not a 40-digit commit hash: refused, nothing written")
        return _NotOnHub(f"{repo_id!r} has no file {filename!r} at revision {revision or 'main'}")
    if isinstance(e, hf_errors.HfHubHTTPError):
        return DownloadError(f"the Hub refused {what}: {_one_line(e)}")
    if isinstance(e, PermissionError):
        return DownloadError(f"cannot write to the Hub cache ({e.filename or where}): "
                             "permission denied. Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory")
    if isinstance(e, OSError) and e.errno == 30:  # EROFS
        return DownloadError(f"cannot write to the Hub cache ({e.filename or where}): "
                             "read-only file system. Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory")
    if isinstance(e, OSError) and e.errno == 28:  # ENOSPC
        return DownloadError(f"no space left on the device holding the Hub cache {where} while "
                             f"fetching {what}; free space or set HF_HUB_CACHE to another disk")
    if _is_transport_error(e) and type(e).__name__ in ("ConnectError", "ConnectTimeout"):
        return DownloadError(f"cannot reach the Hub ({endpoint}) to fetch {what} ({_one_line(e)}), "
                             f"and it is not in the cache {where}. Check the "
                             "network, or set HF_HUB_OFFLINE=1 with a pre-filled cache")
    return DownloadError(f"downloading {what} failed: {type(e).__name__}: {_one_line(e)}")


def _head(repo_id: str, filename: str, revision: str | None, token: Any) -> Any:
    """One HEAD without retries (a down server is a fast, clear error)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = hub_endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    return get_hf_file_metadata(url, token=token, endpoint=endpoint, retry_on_errors=False)


def file_metadata(repo_id: str, filename: str, *, revision: str | None = None,
                  max_size: int = MAX_DOWNLOAD_BYTES, token: Any = None) -> FileMetadata:
    """The Hub's commit, ETag and size of a file, checked, without downloading it."""
    revision = check_revision(revision)
    what = f"{repo_id}/{filename}"
    try:
        return _checked_metadata(_head(repo_id, filename, revision, token), what, max_size)
    except ResNetZooError:
        raise
    except Exception as e:
        if not _translatable(e):
            raise
        raise _translate(e, what, repo_id, filename, revision) from None


def _is_hf_error(e: BaseException) -> bool:
    return type(e).__module__.startswith("huggingface_hub")


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
) -> Path:
    """Fetch ``filename`` of ``repo_id`` into the Hub cache (or find it there), verified; returns
    its snapshot path in the cache.

    Online the file is checked against the ETag the Hub sends for it, and against
    ``expected_sha256`` (a manifest's pin) when given; offline against the pin, or else the name
    of the blob its cache link leads to. ``max_size`` bounds what the server may declare and
    send. ``local_files_only`` reads the cache only, as ``HF_HUB_OFFLINE=1`` does for every call.
    Every failure is a :class:`~resnet_zoo.errors.ResNetZooError` saying what to do.
    """
    revision = check_revision(revision)
    if expected_sha256 and not is_sha256(expected_sha256):
        raise ConfigError(f"expected_sha256 must be 64 lowercase hex digits, got {expected_sha256!r}")
    what = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    pace = pace or DownloadPace.from_env(what)  # bad settings are refused before the Hub is asked
    where = _where(hub_cache_dir(cache_dir))
    cache = RepoCache(where, repo_id)
    try:
        if offline_mode() or local_files_only:
            found = _from_cache(cache, revision, filename, expected_sha256, what)
            if found is None:
                why = "local_files_only=True" if local_files_only else "HF_HUB_OFFLINE=1"
                raise DownloadError(
                    f"{why} and {what} is not in the cache {where}. Pre-fill the cache by "
                    f"loading the model once online (or 'hf download {repo_id} {filename}'), or "
                    "point HF_HUB_CACHE at a cache that has it")
            return found
        try:
            meta = _checked_metadata(_head(repo_id, filename, revision, token), what, max_size)
        except ResNetZooError:
            raise
        except Exception as e:
            if not _translatable(e):
                raise
            error = _translate(e, what, repo_id, filename, revision, where)
            if isinstance(error, _NotOnHub) and (commit := _commit_of_404(e)):
                cache.write_ref(revision, commit)
                cache.mark_absent(commit, filename)  # so that an offline load knows it is absent
            if _unreachable(e):
                found = _from_cache(cache, revision, filename, expected_sha256, what)
                if found is not None:
                    log.warning("%s: the Hub could not be reached (%s); using the cached copy", what, _one_line(e))
                    return found
            raise error from None
        if expected_size is not None and meta.size is not None and meta.size != expected_size:
            raise IntegrityError(f"{what}: the Hub declares {meta.size:,} bytes, the manifest pins "
                                 f"{expected_size:,}: the published file changed. Nothing was "
                                 "downloaded; re-pin it with 'resnet-zoo weights pin' after checking its origin")
        return _fetch(cache, meta, repo_id, filename, revision, expected_sha256, max_size, what,
                      force_download, pace, token)
    except ResNetZooError:
        raise
    except OSError as e:
        raise _translate(e, what, repo_id, filename, revision, where) from None


def _unreachable(e: BaseException) -> bool:
    """The Hub did not answer (down, unreachable, timing out, a 5xx): a cached copy may serve."""
    if _is_transport_error(e):
        return True
    response = getattr(e, "response", None)
    return response is not None and getattr(response, "status_code", 0) >= 500


def _from_cache(cache: RepoCache, revision: str | None, filename: str, pinned: str, what: str) -> Path | None:
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
        if not _allow_unverified():
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


def _fetch(cache: RepoCache, meta: FileMetadata, repo_id: str, filename: str, revision: str | None,
           pinned: str, max_size: int, what: str, force: bool, pace: DownloadPace, token: Any) -> Path:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import WeakFileLock

    key, unverified = meta.etag, False
    if pinned:
        if key is not None and len(key) == 64 and key != pinned:
            raise IntegrityError(
                f"{what}: the Hub's ETag {key} differs from the pinned sha256 {pinned}: the published "
                "file changed. Nothing was downloaded; re-pin it with 'resnet-zoo weights pin' after "
                "checking its origin")
        key = key or pinned
    if key is None:
        if not _allow_unverified():
            raise IntegrityError(
                f"{what}: there is no pinned sha256 and the server's ETag is not a content hash (a "
                "mirror or proxy?), so the file cannot be verified; nothing was downloaded. Pin it in "
                f"the manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this server")
        unverified = True  # a name for the partial download only; the blob is named by its sha256
        key = hashlib.sha256(f"unverified:{meta.commit}:{filename}".encode()).hexdigest()
    blob, lock = cache.blob(key), cache.lock(key)
    cache.cache.mkdir(lock.parent)
    if os.path.islink(lock):
        cache.remove(lock)  # a planted link: the lock file must never truncate its target
    with WeakFileLock(str(lock)):
        if os.path.lexists(blob) and (force or unverified or not cache.cache.regular_file(blob)):
            if not cache.cache.regular_file(blob):
                log.warning("%s in the Hub cache is not a regular file (a planted link?): removed; "
                            "its target was not touched", blob)
            cache.remove(blob)
        elif os.path.lexists(blob):
            ok, why, _ = check_file(blob, key, pinned)
            if not ok:
                log.warning("%s: the cached blob is damaged (%s): downloading it again", what, why)
                cache.remove(blob)
        if not os.path.lexists(blob):
            part = cache.incomplete(key)
            cache.cache.mkdir(cache.blobs)
            url = hf_hub_url(repo_id, filename, revision=meta.commit, endpoint=hub_endpoint())
            _stream(cache, url, part, meta.size, max_size, pace, what, filename, token)
            ok, why, _ = check_file(part, "" if unverified else key, pinned)
            if not ok:
                cache.remove(part)
                raise IntegrityError(f"{what}: {why} (the download was corrupted, or the file "
                                     "changed); nothing was kept, retry the download")
            if unverified:
                log.warning("%s: no pinned sha256 and no content ETag (a mirror or proxy?): loaded "
                            "unverified because %s is set", what, ALLOW_UNVERIFIED_ENV)
                key = sha256_file(part)
                blob = cache.blob(key)
            cache.cache.move(part, blob)
        snap = cache.link(meta.commit, filename, key)
        cache.write_ref(revision, meta.commit)
    return snap


def _decoder(encoding: str | None, what: str):
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


def _stream(cache: RepoCache, url: str, part: Path, size: int | None, max_size: int,
            pace: DownloadPace, what: str, filename: str, token: Any) -> None:
    """GET ``url`` into ``part``, resuming what it holds; never more than ``size`` (declared) or
    ``max_size`` bytes. A dropped connection is resumed up to ``_RETRIES`` times."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status
    from tqdm.auto import tqdm

    from ..progress import advance

    bound = size if size is not None else max_size
    session = get_session()
    failures = 0
    disable = True if constants.HF_HUB_DISABLE_PROGRESS_BARS else None
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=filename[:40],
              disable=disable, leave=False) as bar:
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
                with session.stream("GET", url, headers=headers, follow_redirects=True,
                                    timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
                    if response.status_code == 416:  # the part is not a prefix the server knows
                        cache.remove(part)
                        failures += 1
                        if failures >= _RETRIES:
                            raise DownloadError(f"{what}: the server refused to resume the download")
                        continue
                    if response.status_code >= 400:
                        response.read()
                        hf_raise_for_status(response)
                    append = have > 0 and response.status_code == 206
                    written = have if append else 0
                    bar.reset(total=size)
                    bar.update(written)
                    pace.body_started()
                    decode = _decoder(response.headers.get("Content-Encoding"), what)
                    with cache.cache.open_write(part, append=append) as f:
                        for raw in response.iter_raw():  # as it arrives (a chunk size would buffer a drip)
                            pace.check(len(raw))
                            for piece in decode(raw):
                                if written + len(piece) > bound:
                                    f.close()
                                    cache.remove(part)
                                    raise DownloadError(
                                        f"{what}: the server sent more than the {bound:,} bytes "
                                        f"{'it declared' if size is not None else 'a file of this kind may have'}"
                                        " (a body longer than its size, or a compressed body that "
                                        "inflates): stopped there, and nothing of it was kept")
                                f.write(piece)
                                written += len(piece)
                                advance(bar, len(piece))
                if size is None or written == size:
                    return
                reason = f"the body ended after {written:,} of {size:,} bytes"
            except ResNetZooError:
                raise
            except Exception as e:
                if not _is_transport_error(e):
                    raise
                reason = f"the connection failed ({type(e).__name__}: {_one_line(e)})"
            failures += 1
            if failures >= _RETRIES:
                raise DownloadError(f"{what}: {reason}, {failures} times; the part received is kept "
                                    "(never served) and resumed by the next attempt: retry")
            log.info("%s: %s; resuming", what, reason)


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
        def __init__(self, tensors: dict[str, Any], card: tuple[dict[str, Any], str]) -> None:
            self.tensors = tensors
            self.card = card

        def _save_pretrained(self, save_directory: Path) -> None:
            from safetensors.torch import save_file

            tensors = {k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}
            save_file(tensors, str(save_directory / "model.safetensors"), metadata={"format": "pt"})

        def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
            metadata, text = self.card
            data = ModelCardData(**{k: v for k, v in metadata.items() if v is not None})
            return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")

    _MIXIN_CLASS = ResNetZooHubModel
    return _MIXIN_CLASS


def save_pretrained(
    tensors: dict[str, Any],
    save_directory: str | os.PathLike,
    *,
    config: dict[str, Any],
    card: tuple[dict[str, Any], str],
    push_to_hub: bool = False,
    repo_id: str | None = None,
    **push_kwargs: Any,
) -> str | None:
    """Write config.json, ``tensors`` as model.safetensors and README.md (and optionally push them)."""
    wrapper = _mixin_class()(tensors, card)
    directory = Path(save_directory)
    (directory / "README.md").unlink(missing_ok=True)  # the mixin keeps an existing card
    return wrapper.save_pretrained(
        directory, config=config, push_to_hub=push_to_hub, repo_id=repo_id, **push_kwargs
    )


def push_to_hub(tensors: dict[str, Any], repo_id: str, *, config: dict[str, Any],
                card: tuple[dict[str, Any], str], **kwargs: Any) -> str:
    """Upload ``tensors`` to the Hub as config.json + model.safetensors + README.md."""
    return _mixin_class()(tensors, card).push_to_hub(repo_id, config=config, **kwargs)


