"""Untrusted names, links and bytes: the one place that decides what may become a path, what a
file's hash must be, and what may be printed; stdlib only.

**The path rule.** resnet_zoo creates, writes and deletes files only inside a root it was given
(the Hub cache, a feature set's ``--out``). :class:`Confined` is that root: every path it hands
out is built from checked components, and before anything is created, written or removed the
real location of its parent directory is checked to lie inside the root, so a planted symbolic
link (a snapshot folder pointing at ``$HOME``, a blob pointing at ``~/.bashrc``) is never
followed out. A link found inside the root is removed as a link; its target is never touched.

**Names from a server.** :func:`check_revision`, :func:`is_commit` and :func:`content_etag`
validate what a Hub says before it becomes part of a path.

**Hashes.** :func:`sha256_file` and :func:`git_blob_sha1` (the two kinds of ETag the Hub sends).

**Text.** :func:`printable` escapes control characters (terminal escapes, newlines, bidi
overrides) in text that came from a file or a server before it reaches a terminal.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path

from ..errors import ConfigError, IntegrityError
from .atomic import promote

__all__ = [
    "Confined",
    "check_revision",
    "check_repo_id",
    "is_commit",
    "is_sha256",
    "content_etag",
    "sha256_file",
    "git_blob_sha1",
    "printable",
    "not_a_regular_file",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_REVISION = 255


def is_commit(value: object) -> bool:
    """A full git commit hash: 40 lowercase hex digits."""
    return isinstance(value, str) and bool(_HEX40.match(value))


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


def content_etag(value: object) -> str | None:
    """``value`` if it is a content hash the Hub sends as an ETag (an LFS file's sha256, 64 hex
    digits, or a git blob's sha1, 40), else ``None``."""
    return value if isinstance(value, str) and (_HEX64.match(value) or _HEX40.match(value)) else None


def check_revision(revision: object, *, label: str = "revision") -> str | None:
    """A branch, tag or commit name that is safe to use as a path below ``refs/``, or ``None``.

    Allowed: segments of letters, digits, ``-``, ``_`` and ``.`` joined by ``/`` (``main``,
    ``v1.0``, ``refs/pr/1``), at most 255 characters. Refused: ``..`` or ``.`` segments, empty
    segments (a leading, trailing or doubled ``/``), ``\\`` and anything else.
    """
    if revision is None:
        return None
    if not isinstance(revision, str):
        raise ConfigError(f"{label} must be a string (a branch, tag or commit), got {type(revision).__name__}")
    segments = revision.split("/")
    if (
        not revision
        or len(revision) > MAX_REVISION
        or not all(_SEGMENT.match(s) and s not in (".", "..") for s in segments)
    ):
        raise ConfigError(
            f"{label} {printable(revision[:120])!r} is not a branch, tag or commit name: expected "
            "letters, digits, '-', '_' and '.' in segments joined by '/', no '.' or '..' segment, "
            f"no leading or trailing '/', at most {MAX_REVISION} characters"
        )
    return revision


# The Hub's own rules for repo ids (huggingface_hub validates them after we would have used them).
_REPO_ID = re.compile(r"^[A-Za-z0-9_.-]{1,96}/[A-Za-z0-9_.-]{1,96}$")


def check_repo_id(repo_id: object, *, spec: str | None = None) -> str:
    """An ``owner/repo`` id safe to name a cache folder: letters, digits, ``-``, ``_``, ``.``,
    at most 96 each, no ``..`` or ``--``, not ending in ``.`` or ``-``."""
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.match(repo_id)
        or ".." in repo_id
        or "--" in repo_id
        or repo_id.endswith((".", "-"))
    ):
        shown = printable(str(spec if spec is not None else repo_id))[:120]
        raise ConfigError(
            f"{shown!r}: expected 'hf-hub:owner/repo' or 'hf-hub:owner/repo@revision', "
            "owner and repo made of letters, digits, '-', '_' and '.' (at most 96 each)"
        )
    return repo_id


def _component(name: str) -> str:
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise IntegrityError(
            f"{printable(str(name))[:120]!r} cannot be a file name (a path separator, '..' or an empty name)"
        )
    return name


class Confined:
    """A directory that resnet_zoo may write below, and nothing outside it.

    ``root`` itself is trusted (the user chose it); everything below it is not: a symbolic link
    anywhere under it may have been planted.
    """

    def __init__(self, root: str | os.PathLike, *, label: str = "the cache") -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.label = label

    def __repr__(self) -> str:
        return f"Confined({str(self.root)!r})"

    # -- building paths ------------------------------------------------------------------

    def path(self, *parts: str) -> Path:
        """``root / parts``, each part one or more ``/``-separated plain components."""
        names = [c for part in parts for c in str(part).split("/")]
        return self.root.joinpath(*(_component(c) for c in names))

    def _real_root(self) -> Path:
        return Path(os.path.realpath(self.root))

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether the real location of ``path`` (every link followed) lies inside the root."""
        return _is_within(Path(os.path.realpath(path)), self._real_root())

    def _parent_inside(self, path: Path) -> Path:
        """The real parent directory of ``path``, after checking that it is inside the root."""
        path = Path(path)
        if not _is_within(Path(os.path.abspath(path)), self.root):
            raise IntegrityError(f"{path} is outside {self.label} {self.root}: refused")
        parent = Path(os.path.realpath(path.parent))
        if not _is_within(parent, self._real_root()):
            raise IntegrityError(
                f"{self.label} {self.root} was tampered with: {path.parent} is a link to {parent}, "
                "outside it. Nothing was written there; remove the link (or use another cache)"
            )
        return parent / path.name

    # -- acting on paths -----------------------------------------------------------------

    def mkdir(self, path: Path) -> Path:
        """Create the directory ``path`` (and its parents) inside the root."""
        absolute = Path(os.path.abspath(path))
        if not _is_within(absolute, self.root):
            raise IntegrityError(f"{path} is outside {self.label} {self.root}: refused")
        self.root.mkdir(parents=True, exist_ok=True)  # the root itself is the user's choice
        current = self.root
        for name in absolute.relative_to(self.root).parts:
            current = current / name
            real = self._parent_inside(current)
            if os.path.islink(real) and not self.contains(real):
                raise IntegrityError(
                    f"{self.label} {self.root} was tampered with: {current} is a link to "
                    f"{os.path.realpath(real)}, outside it. Nothing was written there; remove the link"
                )
            try:
                os.mkdir(real)
            except FileExistsError:
                if not os.path.isdir(real):
                    raise IntegrityError(f"{current} in {self.label} is not a directory: remove it") from None
        return Path(path)

    def remove(self, path: Path) -> bool:
        """Remove the entry ``path`` itself (a file or a link, never a link's target). Returns
        whether something was removed."""
        real = self._parent_inside(path)
        try:
            os.unlink(real)
            return True
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            raise IntegrityError(f"{path} in {self.label} is a directory where a file belongs: remove it") from None

    def open_write(self, path: Path, *, append: bool = False):
        """Open ``path`` for writing, binary, creating it; a link planted at ``path`` is removed
        first and never followed (``O_NOFOLLOW``)."""
        real = self._parent_inside(path)
        if os.path.islink(real):
            os.unlink(real)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        flags |= os.O_APPEND if append else os.O_TRUNC
        try:
            fd = os.open(real, flags, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:  # re-planted between the check and the open
                raise IntegrityError(f"{path} in {self.label} is a symbolic link: refused") from None
            raise
        return os.fdopen(fd, "ab" if append else "wb")

    def _regular_stat(self, path: Path) -> os.stat_result | None:
        """``lstat`` of ``path`` if it is a regular file itself (not a link to one), else ``None``."""
        try:
            st = os.lstat(self._parent_inside(path))
        except OSError:
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    def regular_file(self, path: Path) -> bool:
        """Whether ``path`` is a regular file itself (not a link to one) inside the root."""
        return self._regular_stat(path) is not None

    def size(self, path: Path) -> int:
        """The size of the regular file ``path`` (0 if it is missing or not a regular file)."""
        st = self._regular_stat(path)
        return st.st_size if st is not None else 0

    def write_atomic(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` through a temporary name beside it, then rename: readers
        see the old file or the new one, never a part."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
        try:
            with self.open_write(tmp) as f:
                f.write(data)
            self.move(tmp, path)
        finally:
            if os.path.lexists(tmp):
                self.remove(tmp)

    def symlink(self, target: Path, link: Path) -> None:
        """Make ``link`` point at ``target`` (both inside the root), replacing what is there.
        The link is relative (as huggingface_hub writes them), so the cache can be moved. Where
        links cannot be made (some Windows setups) the target is copied."""

        real_link = self._parent_inside(link)
        if not self.contains(target):
            raise IntegrityError(f"{target} is outside {self.label} {self.root}: refused")
        relative = os.path.relpath(os.path.realpath(target), real_link.parent)
        tmp = real_link.with_name(f".{real_link.name}.{os.getpid()}-{os.urandom(4).hex()}.link")
        try:
            os.symlink(relative, tmp)
        except (OSError, NotImplementedError):
            import shutil

            with open(os.path.realpath(target), "rb") as src, self.open_write(tmp) as dst:
                shutil.copyfileobj(src, dst)
        try:
            promote(tmp, real_link)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise

    def move(self, src: Path, dst: Path) -> None:
        """Move the regular file ``src`` over ``dst``, both inside the root."""

        promote(self._parent_inside(src), self._parent_inside(dst))


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# --- Hashes -------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob sha1 of a file (the ETag the Hub sends for a file not stored in LFS)."""
    h = hashlib.sha1()
    h.update(b"blob %d\0" % os.stat(path).st_size)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


# --- Text ---------------------------------------------------------------------------------------


def printable(text: object) -> str:
    """``text`` with every non-printable character (C0/C1 controls such as ESC, newlines, tabs,
    DEL, bidi overrides and other format characters) written as a ``\\x..``/``\\u....`` escape,
    so a label or a server's answer cannot move the cursor, recolour or rewrite a terminal."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


# --- What a path is -----------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISCHR, "is a character device, not a file"),
    (stat.S_ISBLK, "is a block device, not a file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """``None`` for a regular file (symbolic links followed), else what the path is instead:
    "does not exist", "is a directory", "is a character device, not a file", ...

    ``Path.is_file()`` is False for all of these alike; the messages must tell them apart, and a
    FIFO must never be opened (``open`` waits for a writer)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a broken symbolic link" if os.path.islink(path) else "does not exist"
    except NotADirectoryError:
        return "does not exist (a parent is not a directory)"
    except PermissionError:
        return "cannot be read (permission denied)"
    except (OSError, ValueError) as e:  # a name too long, a NUL byte
        return f"cannot be used ({e})"
    if stat.S_ISREG(mode):
        return None
    return next((text for test, text in _KINDS if test(mode)), "is not a regular file")
