"""Download, cache and verify files from the Hugging Face Hub; save and publish models.

The only module that talks to huggingface_hub, imported lazily so that ``import resnet_zoo``
stays cheap. Downloads go through ``hf_hub_download`` (its cache layout, file locks, resume and
progress bar). huggingface_hub checks only a download's size; here every file is also checked
against its sha256: the pinned one from the manifest when there is one, otherwise the Hub's own
ETag (an LFS file's ETag is its sha256, a small file's is its git blob sha1). A mismatch deletes
the cached copy before raising, so a later load never trusts it.

``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` are read at call time (huggingface_hub
reads them once, at import).

A download is paced: huggingface_hub's own timeout is per socket read, so a server that sends
one byte every few seconds never trips it. While :func:`download` runs, every chunk the HTTP
client receives is counted (a response hook on huggingface_hub's shared client, inactive for
everyone else); a transfer slower than ``RESNET_ZOO_DOWNLOAD_MIN_SPEED`` bytes/s over
``RESNET_ZOO_DOWNLOAD_SPEED_WINDOW`` seconds, or longer than ``RESNET_ZOO_DOWNLOAD_DEADLINE``
seconds in all, stops with a :class:`DownloadError`. What was received stays as
huggingface_hub's ``.incomplete`` file, which it resumes and never serves as the file. A file
huggingface_hub fetches through ``hf_xet`` (Xet-backed storage) does not pass through the HTTP
client, so hf_xet's own timeouts apply to it (``HF_HUB_DISABLE_XET=1`` sends it over HTTP).
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, DownloadError, IntegrityError, ResNetZooError, UnknownModelError

__all__ = [
    "download",
    "download_optional",
    "pin_weights",
    "file_metadata",
    "sha256_file",
    "verify_file",
    "offline_mode",
    "hub_cache_dir",
    "save_pretrained",
    "DownloadPace",
]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "on", "yes", "true"}
# Opt-in for servers whose ETags are not content hashes and whose files are not pinned.
ALLOW_UNVERIFIED_ENV = "RESNET_ZOO_ALLOW_UNVERIFIED"


# Pacing: a download slower than MIN_SPEED bytes/s over WINDOW seconds, or longer than DEADLINE
# seconds in all, is stopped. 10 kB/s over 30 s never stops a working link (a 100 MB ResNet-50 at
# 10 kB/s would take three hours) and stops a one-byte-every-5-s drip after 30 s.
DEADLINE_ENV = "RESNET_ZOO_DOWNLOAD_DEADLINE"
MIN_SPEED_ENV = "RESNET_ZOO_DOWNLOAD_MIN_SPEED"
WINDOW_ENV = "RESNET_ZOO_DOWNLOAD_SPEED_WINDOW"
DEFAULT_DEADLINE = 0.0  # none: a large file on a slow but steady link is not an error
DEFAULT_MIN_SPEED = 10_240.0
DEFAULT_WINDOW = 30.0


def _limit_expected(value: Any, *, allow_zero: bool) -> str | None:
    """``None`` when ``value`` is a valid pace limit, else what a valid one is."""
    ok = (isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    return None if ok else ("a number >= 0 (0 turns it off)" if allow_zero else "a number > 0")


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if expected := _limit_expected(value, allow_zero=allow_zero):
        raise ConfigError(f"{name}={raw!r} is not valid: expected {expected}")
    return value


@dataclass
class DownloadPace:
    """The limits one download must keep, and what it has received so far.

    ``deadline``: seconds for the whole download (0: none). ``min_speed``: bytes per second,
    averaged over each ``window`` seconds (0: no minimum).
    """

    deadline: float = DEFAULT_DEADLINE
    min_speed: float = DEFAULT_MIN_SPEED
    window: float = DEFAULT_WINDOW
    what: str = "the download"
    received: int = 0
    _start: float = field(default_factory=time.monotonic, repr=False)
    _mark: tuple[float, int] = (0.0, 0)
    _body_started: bool = False

    def __post_init__(self) -> None:
        for name, value, allow_zero in (("deadline", self.deadline, True),
                                        ("min_speed", self.min_speed, True),
                                        ("window", self.window, False)):
            if expected := _limit_expected(value, allow_zero=allow_zero):
                raise ConfigError(f"download {name}={value!r} is not valid: expected {expected}")
        self._mark = (self._start, 0)

    @classmethod
    def from_env(cls, what: str = "the download") -> "DownloadPace":
        return cls(deadline=_env_seconds(DEADLINE_ENV, DEFAULT_DEADLINE, allow_zero=True),
                   min_speed=_env_seconds(MIN_SPEED_ENV, DEFAULT_MIN_SPEED, allow_zero=True),
                   window=_env_seconds(WINDOW_ENV, DEFAULT_WINDOW, allow_zero=False), what=what)

    def body_started(self) -> None:
        """The first body is coming: the speed is measured from here, not across the wait for
        another process's file lock. (Later bodies, huggingface_hub's resumed retries, do not
        restart it: a drip that outlasts each read timeout must still add up.)"""
        if not self._body_started:
            self._body_started = True
            self._mark = (time.monotonic(), self.received)

    def check(self, nbytes: int = 0) -> None:
        """Count ``nbytes`` more; raise :class:`DownloadError` when a limit is broken."""
        self.received += nbytes
        now = time.monotonic()
        elapsed = now - self._start
        if self.deadline and elapsed > self.deadline:
            raise DownloadError(
                f"{self.what}: stopped after {elapsed:.0f} s ({self.received:,} bytes received), over "
                f"the {self.deadline:g} s deadline set by {DEADLINE_ENV}. The part received is kept "
                "and resumed by the next attempt; raise the deadline for a slow link")
        mark_t, mark_bytes = self._mark
        if self.min_speed and now - mark_t >= self.window:
            speed = (self.received - mark_bytes) / (now - mark_t)
            if speed < self.min_speed:
                raise DownloadError(
                    f"{self.what}: the server sent {speed:,.{1 if speed < 10 else 0}f} bytes/s over the last "
                    f"{now - mark_t:.0f} s, below the minimum of {self.min_speed:,.0f} bytes/s "
                    f"({MIN_SPEED_ENV}, over {WINDOW_ENV}={self.window:g} s); stopped. The part "
                    "received is kept and resumed by the next attempt; retry, or lower the minimum "
                    "(0 turns it off) for a slow link")
            self._mark = (now, self.received)


_PACE: contextvars.ContextVar[DownloadPace | None] = contextvars.ContextVar("resnet_zoo_pace", default=None)
_HOOK_LOCK = threading.Lock()
_PACED_STREAM_TYPES: dict[type, type] = {}


def _paced_stream_type(base: type) -> type:
    """A subclass of the client's ``SyncByteStream`` that counts each chunk against the pace."""
    cls = _PACED_STREAM_TYPES.get(base)
    if cls is None:
        def __init__(self: Any, inner: Any, pace: DownloadPace) -> None:
            self._inner, self._pace = inner, pace

        def __iter__(self: Any) -> Iterator[bytes]:
            self._pace.check(0)
            for chunk in self._inner:
                self._pace.check(len(chunk))
                yield chunk

        def close(self: Any) -> None:
            self._inner.close()

        cls = type("PacedStream", (base,), {"__init__": __init__, "__iter__": __iter__, "close": close})
        _PACED_STREAM_TYPES[base] = cls
    return cls


def _on_request(request: Any) -> None:
    pace = _PACE.get()
    if pace is not None:
        pace.check(0)  # a retry after the deadline does not start


def _on_response(response: Any) -> None:
    pace = _PACE.get()
    if pace is None:
        return
    if getattr(response.request, "method", "GET") == "GET":
        pace.body_started()
    stream = response.stream
    base = next((c for c in type(stream).__mro__ if c.__name__ == "SyncByteStream"), None)
    if base is not None:
        response.stream = _paced_stream_type(base)(stream, pace)


def _install_pacing() -> bool:
    """Add the pacing hooks to huggingface_hub's shared HTTP client (once per client)."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = getattr(session, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    if _on_response in hooks.get("response", ()):
        return True
    with _HOOK_LOCK:
        hooks = session.event_hooks
        if _on_response not in hooks.get("response", ()):
            session.event_hooks = {"request": [*hooks.get("request", ()), _on_request],
                                   "response": [*hooks.get("response", ()), _on_response]}
    return True


class _NotOnHub(UnknownModelError):
    """The repo exists, the file does not (a 404 for the file itself)."""


def offline_mode() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in _TRUE


def _sync_offline() -> bool:
    """Read HF_HUB_OFFLINE now and tell huggingface_hub, whose own copy was read at its import."""
    from huggingface_hub import constants

    offline = offline_mode()
    constants.HF_HUB_OFFLINE = offline
    return offline


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


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1()
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _evict(path: Path) -> None:
    """Delete a cached file: the blob it points to and the snapshot link itself."""
    blob = path.resolve()
    for p in (blob, path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # pragma: no cover - depends on the file system
            log.warning("could not delete %s: %s", p, e)


def verify_file(path: Path, *, expected_sha256: str = "", what: str = "", evict: bool = True) -> str:
    """Check ``path`` against ``expected_sha256`` or, in the Hub's cache, its ETag (the blob name).

    Returns the file's sha256. On a mismatch the cached copy is deleted (``evict``) and
    :class:`IntegrityError` is raised.
    """
    path = Path(path)
    what = what or str(path)
    etag = path.resolve().name
    actual = sha256_file(path)
    if expected_sha256:
        if actual != expected_sha256:
            if not evict:
                raise IntegrityError(
                    f"{what}: sha256 {actual} differs from the manifest's {expected_sha256}: the "
                    "installed file was modified or damaged; reinstall resnet_zoo"
                )
            _evict(path)
            raise IntegrityError(
                f"{what}: sha256 {actual} differs from the pinned {expected_sha256}; the cached copy "
                "was deleted. Retry the download; if it persists, the published file changed: "
                "re-pin it with 'resnet-zoo weights pin' after checking its origin"
            )
    elif _HEX64.match(etag):
        if actual != etag:
            _evict(path)
            raise IntegrityError(
                f"{what}: sha256 {actual} differs from the Hub's ETag {etag} (the download was "
                "corrupted); the cached copy was deleted, retry the download"
            )
    elif _HEX40.match(etag):
        blob_sha1 = _git_blob_sha1(path)
        if blob_sha1 != etag:
            _evict(path)
            raise IntegrityError(
                f"{what}: git blob sha1 {blob_sha1} differs from the Hub's ETag {etag}; the cached "
                "copy was deleted, retry the download"
            )
    elif os.environ.get(ALLOW_UNVERIFIED_ENV, "").strip().lower() in _TRUE:
        log.warning("%s: no pinned sha256 and no content ETag (a mirror or proxy?): loaded unverified "
                    "because %s is set", what, ALLOW_UNVERIFIED_ENV)
    else:
        if evict:
            _evict(path)
        raise IntegrityError(
            f"{what}: there is no pinned sha256 and the server's ETag {etag!r} is not a content hash "
            f"(a mirror or proxy?), so the file cannot be verified; it was not kept. Pin it in the "
            f"manifest, or set {ALLOW_UNVERIFIED_ENV}=1 to trust this server")
    return actual


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str = "",
    force_download: bool = False,
    verify: bool = True,
    pace: DownloadPace | None = None,
) -> Path:
    """Fetch ``filename`` of ``repo_id`` into the Hub cache (or find it there) and verify it.

    Honours ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE``. Every failure becomes a
    :class:`~resnet_zoo.errors.ResNetZooError` saying what to do. ``pace`` bounds a slow
    transfer (default: :meth:`DownloadPace.from_env`).
    """
    what = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    if pace is None:
        pace = DownloadPace.from_env(what)
    if not _install_pacing():  # pragma: no cover - a client without httpx's event hooks
        log.warning("%s: this huggingface_hub's HTTP client takes no hooks, so a slow download is "
                    "bounded only by huggingface_hub's own read timeout", what)
    token = _PACE.set(pace)
    try:
        return _download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                         expected_sha256=expected_sha256, force_download=force_download,
                         verify=verify, what=what)
    finally:
        _PACE.reset(token)


def _download(repo_id: str, filename: str, *, revision: str | None, cache_dir: Any,
              expected_sha256: str, force_download: bool, verify: bool, what: str) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    cache = hub_cache_dir(cache_dir)
    offline = _sync_offline()
    endpoint = hub_endpoint()
    try:
        if not offline and not force_download and not _cached(repo_id, filename, revision, cache):
            # huggingface_hub retries a failed first download with backoff for ~20 s; one quick
            # HEAD first makes "server down, cold cache" a fast, clear error.
            try:
                _probe(repo_id, filename, revision, endpoint)
            except hf_errors.RemoteEntryNotFoundError:
                pass  # hf_hub_download asks again and records the absence in the cache (offline use)
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache,
            endpoint=endpoint,
            local_files_only=offline,
            force_download=force_download,
        )
    except ResNetZooError:
        raise  # the pace was broken (a DownloadError, also an OSError)
    except hf_errors.RevisionNotFoundError:
        raise UnknownModelError(
            f"revision {revision!r} of {repo_id!r} does not exist on the Hub ({endpoint or 'default endpoint'})"
        ) from None
    except hf_errors.RepositoryNotFoundError:
        raise UnknownModelError(
            f"weights repository {repo_id!r} does not exist on the Hub ({endpoint or 'default endpoint'}), "
            "or it is private or gated and no token was given"
        ) from None
    except hf_errors.RemoteEntryNotFoundError:
        raise _NotOnHub(f"{repo_id!r} has no file {filename!r} at revision {revision or 'main'}") from None
    except hf_errors.LocalEntryNotFoundError:
        where = _where(cache)
        if offline:
            raise DownloadError(
                f"HF_HUB_OFFLINE=1 and {what} is not in the cache {where}. Pre-fill the cache by "
                "loading the model once online (or 'hf download "
                f"{repo_id} {filename}'), or point HF_HUB_CACHE at a cache that has it"
            ) from None
        raise DownloadError(
            f"cannot reach the Hub ({endpoint or 'default endpoint'}) to fetch {what}, and it is not "
            f"in the cache {where}. Check the network, or set HF_HUB_OFFLINE=1 with a pre-filled cache"
        ) from None
    except PermissionError as e:
        raise DownloadError(
            f"cannot write to the Hub cache ({e.filename or _where(cache)}): permission denied. "
            "Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory"
        ) from None
    except hf_errors.HfHubHTTPError as e:
        raise DownloadError(f"the Hub refused {what}: {e}") from None
    except OSError as e:
        if getattr(e, "errno", None) == 30:  # EROFS
            raise DownloadError(
                f"cannot write to the Hub cache ({e.filename or _where(cache)}): read-only file "
                "system. Set HF_HUB_CACHE (or pass cache_dir=) to a writable directory"
            ) from None
        if getattr(e, "errno", None) == 28:  # ENOSPC
            raise DownloadError(
                f"no space left on the device holding the Hub cache {_where(cache)} while fetching "
                f"{what}; free space or set HF_HUB_CACHE to another disk"
            ) from None
        raise DownloadError(f"downloading {what} failed: {e}") from None
    except Exception as e:  # httpx transport errors (refused, timed out, dropped connection)
        if not type(e).__module__.split(".")[0].startswith("httpx"):
            raise
        if type(e).__name__ in ("ConnectError", "ConnectTimeout"):
            raise DownloadError(
                f"cannot reach the Hub ({endpoint or 'default endpoint'}) to fetch {what} "
                f"({e}), and it is not in the cache {_where(cache)}. Check the network, or set "
                "HF_HUB_OFFLINE=1 with a pre-filled cache"
            ) from None
        raise DownloadError(f"downloading {what} failed: {type(e).__name__}: {e}") from None
    path = Path(path)
    if verify:
        verify_file(path, expected_sha256=expected_sha256, what=what)
    return path


def download_optional(repo_id: str, filename: str, **kwargs: Any) -> Path | None:
    """:func:`download`, or ``None`` when the Hub says the file does not exist.

    Online that is a 404 on the file; offline (``HF_HUB_OFFLINE=1``) it is the absence that
    huggingface_hub recorded in the cache when the Hub answered that 404 with its commit.
    """
    try:
        return download(repo_id, filename, **kwargs)
    except _NotOnHub:
        return None  # the server has just answered 404 for the file itself
    except DownloadError:
        if offline_mode() and _known_absent(repo_id, filename, kwargs.get("revision"),
                                            hub_cache_dir(kwargs.get("cache_dir"))):
            return None
        raise


def _known_absent(repo_id: str, filename: str, revision: str | None, cache: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.file_download import _CACHED_NO_EXIST

    return try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision) is _CACHED_NO_EXIST


def _cached(repo_id: str, filename: str, revision: str | None, cache: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
    return isinstance(found, str)


def _probe(repo_id: str, filename: str, revision: str | None, endpoint: str | None) -> None:
    """One HEAD without retries; raises huggingface_hub's or httpx's error on failure."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    get_hf_file_metadata(url, endpoint=endpoint, retry_on_errors=False)


def file_metadata(repo_id: str, filename: str, *, revision: str | None = None) -> dict[str, Any]:
    """The Hub's commit, sha256 (the LFS ETag) and size of a file, without downloading it."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub import errors as hf_errors

    _sync_offline()
    endpoint = hub_endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    except hf_errors.RepositoryNotFoundError:
        raise UnknownModelError(f"weights repository {repo_id!r} does not exist on the Hub") from None
    except hf_errors.RemoteEntryNotFoundError:
        raise UnknownModelError(f"{repo_id!r} has no file {filename!r}") from None
    except Exception as e:
        raise DownloadError(f"cannot read the Hub's metadata of {repo_id}/{filename}: {e}") from None
    return {"commit": meta.commit_hash, "etag": meta.etag, "size": meta.size}


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
        def __init__(self, model: Any, card: tuple[dict[str, Any], str]) -> None:
            self.model = model
            self.card = card

        def _save_pretrained(self, save_directory: Path) -> None:
            from safetensors.torch import save_file

            tensors = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
            save_file(tensors, str(save_directory / "model.safetensors"), metadata={"format": "pt"})

        def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
            metadata, text = self.card
            data = ModelCardData(**{k: v for k, v in metadata.items() if v is not None})
            return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")

    _MIXIN_CLASS = ResNetZooHubModel
    return _MIXIN_CLASS


def save_pretrained(
    model: Any,
    save_directory: str | os.PathLike,
    *,
    config: dict[str, Any],
    card: tuple[dict[str, Any], str],
    push_to_hub: bool = False,
    repo_id: str | None = None,
    **push_kwargs: Any,
) -> str | None:
    """Write config.json, model.safetensors and README.md (and optionally push them)."""
    wrapper = _mixin_class()(model, card)
    directory = Path(save_directory)
    (directory / "README.md").unlink(missing_ok=True)  # the mixin keeps an existing card
    return wrapper.save_pretrained(
        directory, config=config, push_to_hub=push_to_hub, repo_id=repo_id, **push_kwargs
    )


def push_to_hub(model: Any, repo_id: str, *, config: dict[str, Any], card: tuple[dict[str, Any], str],
                **kwargs: Any) -> str:
    """Upload a model to the Hub as config.json + model.safetensors + README.md."""
    return _mixin_class()(model, card).push_to_hub(repo_id, config=config, **kwargs)


# --- Pinning published weights -----------------------------------------------------------

def pin_weights(tags: "Sequence[str] | None" = None) -> dict[str, dict[str, Any]]:
    """Resolve the Hub's current commit, sha256 and size of each tag; write them to the manifest."""
    from ..manifest import load_manifest, manifest_path, write_pins

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
        meta = file_metadata(spec.hf_hub_id, spec.filename, revision="main")
        sha = meta["etag"] if meta["etag"] and len(meta["etag"]) == 64 else ""
        if not sha:  # not an LFS file: its ETag is not a content sha256, so hash the file
            path = download(spec.hf_hub_id, spec.filename, revision=meta["commit"])
            sha = sha256_file(path)
        pins[name] = {"revision": meta["commit"], "sha256": sha, "size": meta["size"]}
        log.info("pinned %s at %s (%s bytes)", name, meta["commit"], meta["size"])
    write_pins(manifest_path(), pins)
    return pins
