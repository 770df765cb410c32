"""One repo's files in the Hugging Face Hub cache, read and written with every name checked;
stdlib only (the layout is huggingface_hub's, so its tools and ours share one cache)::

    <cache>/models--owner--repo/
        blobs/<etag>                the bytes, named by their content hash (sha256 or git sha1)
        blobs/<etag>.incomplete     a download in progress: resumed, never served
        refs/<revision>             the commit a branch or tag pointed at when the Hub last said
        snapshots/<commit>/<file>   a relative link to ../../blobs/<etag>
        .no_exist/<commit>/<file>   the Hub answered 404 for this file at this commit
    <cache>/.locks/models--owner--repo/<etag>.lock

Every path comes from :class:`~resnet_zoo.util.integrity.Confined`: a commit must be 40 hex digits,
an ETag a content hash, a revision a checked branch or tag name, before it names anything; and a
link found in the cache is followed only to a regular file inside this repo's ``blobs/``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from ..errors import IntegrityError
from ..util.integrity import Confined, check_revision, content_etag, git_blob_sha1, is_commit, sha256_file

__all__ = ["RepoCache", "check_file"]

log = logging.getLogger(__name__)


def check_file(path: Path, etag: str, pinned: str = "") -> tuple[bool, str, bool]:
    """Whether the bytes of ``path`` hash to ``etag`` (a sha256, or a git blob sha1; ``""``:
    none) and to the pinned sha256, if any, each hash taken once. Returns ``(ok, why not,
    whether the bytes still match the etag they are named by)``."""
    actual = sha256_file(path)
    if len(etag) == 40:
        sha1 = git_blob_sha1(path)
        named, etag_why = sha1 == etag, f"git blob sha1 {sha1} differs from the Hub's ETag {etag}"
    else:
        named, etag_why = actual == etag, f"sha256 {actual} differs from the Hub's ETag {etag}"
    if pinned and actual != pinned:
        return False, f"sha256 {actual} differs from the pinned {pinned}", bool(etag) and named
    if etag and not named:
        return False, etag_why, False
    return True, "", bool(etag)


class RepoCache:
    """The cache entries of ``repo_id`` (already validated) under ``cache_root``; ``repo_type``
    ``"dataset"`` for a dataset repo (``datasets--owner--name``), else a model repo."""

    def __init__(self, cache_root: str | os.PathLike, repo_id: str, repo_type: str | None = None) -> None:
        self.cache = Confined(cache_root, label="the Hub cache")
        self.repo_type = "dataset" if repo_type == "dataset" else None
        self.name = ("datasets--" if self.repo_type else "models--") + repo_id.replace("/", "--")
        self.folder = self.cache.path(self.name)
        self.blobs = self.folder / "blobs"

    # -- names -----------------------------------------------------------------------------

    def blob(self, etag: str) -> Path:
        if content_etag(etag) is None:
            raise IntegrityError(f"{etag!r} is not a content hash: it cannot name a blob")
        return self.cache.path(self.name, "blobs", etag)

    def incomplete(self, etag: str) -> Path:
        return self.blob(etag).with_name(f"{etag}.incomplete")

    def lock(self, etag: str) -> Path:
        return self.cache.path(".locks", self.name, f"{content_etag(etag) or 'x'}.lock")

    def snapshot(self, commit: str, filename: str) -> Path:
        if not is_commit(commit):
            raise IntegrityError(f"{commit!r} is not a 40-digit commit hash: it cannot name a snapshot")
        return self.cache.path(self.name, "snapshots", commit, filename)

    def ref(self, revision: str) -> Path:
        return self.cache.path(self.name, "refs", check_revision(revision) or "main")

    def no_exist(self, commit: str, filename: str) -> Path:
        if not is_commit(commit):
            raise IntegrityError(f"{commit!r} is not a 40-digit commit hash")
        return self.cache.path(self.name, ".no_exist", commit, filename)

    # -- reading ---------------------------------------------------------------------------

    def commit_of(self, revision: str | None) -> str | None:
        """The commit ``revision`` names: itself if it is one, else what ``refs/`` recorded (a
        ref whose content is not a commit hash is ignored, with a warning)."""
        revision = revision or "main"
        if is_commit(revision):
            return revision
        ref = self.ref(revision)
        if not self.cache.regular_file(ref):
            return None
        try:
            with open(ref, "rb") as f:
                text = f.read(128).decode("ascii", "replace").strip()
        except OSError:
            return None
        if not is_commit(text):
            log.warning("%s holds %r, not a commit hash: ignored (the cache was tampered with)", ref, text[:64])
            return None
        return text

    def linked_blob(self, commit: str, filename: str) -> Path | None:
        """The blob that the snapshot entry of ``filename`` at ``commit`` links to, or ``None``
        when there is no entry. An entry whose real target is not a regular file directly in
        this repo's ``blobs/`` is refused as tampering (:class:`IntegrityError`)."""
        snap = self.snapshot(commit, filename)
        if not os.path.lexists(snap):
            return None
        real = Path(os.path.realpath(snap))
        blobs = Path(os.path.realpath(self.blobs))
        try:
            regular = stat.S_ISREG(os.lstat(real).st_mode)
        except OSError:
            regular = False
        if real.parent != blobs or not self.cache.contains(blobs) or not regular:
            raise IntegrityError(self.tampered(snap, real))
        return self.blobs / real.name

    def tampered(self, entry: Path, target: Path) -> str:
        return (
            f"the Hub cache {self.cache.root} was tampered with: {entry} leads to {target}, "
            f"not to a file in {self.blobs}. The link was removed (its target was not touched); "
            "load again online to fetch a verified copy"
        )

    def known_absent(self, revision: str | None, filename: str) -> bool:
        commit = self.commit_of(revision)
        return commit is not None and self.cache.regular_file(self.no_exist(commit, filename))

    # -- writing ---------------------------------------------------------------------------

    def write_ref(self, revision: str | None, commit: str) -> None:
        revision = revision or "main"
        if revision == commit or not is_commit(commit):
            return
        ref = self.ref(revision)
        self.cache.mkdir(ref.parent)
        self.cache.write_atomic(ref, commit.encode("ascii"))

    def mark_absent(self, commit: str, filename: str) -> None:
        entry = self.no_exist(commit, filename)
        self.cache.mkdir(entry.parent)
        self.cache.write_atomic(entry, b"")

    def link(self, commit: str, filename: str, etag: str) -> Path:
        """Point the snapshot entry of ``filename`` at ``commit`` to ``blobs/<etag>``; returns it."""
        snap = self.snapshot(commit, filename)
        blob = self.blob(etag)
        self.cache.mkdir(snap.parent)
        if os.path.lexists(snap):
            target = Path(os.path.realpath(snap))
            if target != Path(os.path.realpath(blob)):
                log.warning(
                    "%s linked to %s, not to the blob the Hub names (%s): the cache was "
                    "tampered with; relinked to the verified blob",
                    snap,
                    target,
                    blob.name,
                )
        self.cache.symlink(blob, snap)
        return snap

    def evict(self, snap: Path) -> bool:
        """Remove a snapshot entry that failed its check, and the blob it links to when that blob
        is an entry of this repo's ``blobs/``; a target anywhere else is never touched. Returns
        whether the entry led somewhere else (the cache was tampered with)."""
        inside = False
        if os.path.islink(snap):
            hop = Path(os.path.abspath(os.path.join(os.path.dirname(snap), os.readlink(snap))))
            if hop.parent == Path(os.path.abspath(self.blobs)) and content_etag(hop.name):
                # the entry itself, inside blobs/: a regular file (the bad bytes) or a planted link
                real = Path(os.path.realpath(snap))
                inside = real.parent == Path(os.path.realpath(self.blobs))
                self.cache.remove(hop)
        self.cache.remove(snap)
        return not inside

    def remove(self, path: Path) -> None:
        self.cache.remove(path)
