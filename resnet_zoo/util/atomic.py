"""Write a file, or a directory of files, so that readers see the old one or the whole new one,
never a part; stdlib only."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator

__all__ = [
    "atomic_write",
    "write_text_atomic",
    "promote",
    "remove_partials",
    "staging_beside",
    "replace_directory",
    "WriterLock",
]


_PARTIAL = ".partial"


def _umask() -> int:
    """This process's umask: read where the system shows it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``: on success it is renamed over ``path``, on any
    error deleted.

    The temporary name is unique per call (concurrent writers never share one) and keeps the
    file's suffix, for writers that choose the format from it (``curves.png``). The rename is
    atomic on the same file system, so a process killed at any moment leaves either the old file
    or the complete new one under ``path``, and at worst a stray ``.*.partial*`` file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{os.urandom(4).hex()}{_PARTIAL}{path.suffix}")
    try:
        yield tmp
        # Writers such as safetensors create their file 0600; every file written here follows
        # the umask instead, as a plain open() does (an index 0644 beside shards 0600 locked
        # other users out of the shards alone).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text)`` (UTF-8), atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def promote(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file (one written under a name of its own, such as a resumable
    download's ``.incomplete``) over ``path``, atomically."""
    os.replace(tmp, path)


_STAGING = ".staging-"


def staging_beside(target: str | os.PathLike) -> Path:
    """A fresh directory beside ``target`` (the same file system) to build its new contents in;
    stale ones of killed writers (their process gone) are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(f".{target.name}{_STAGING}*"):
        pid = old.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    staging = target.with_name(f".{target.name}{_STAGING}{os.getpid()}-{os.urandom(4).hex()}")
    staging.mkdir(mode=0o777)  # the umask applies
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux's renameat2 with RENAME_EXCHANGE); False where the
    system or its file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def replace_directory(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete directory ``staging`` at ``target`` in one step, then delete the old
    one: a process killed at any moment leaves ``target`` the whole old directory or the whole
    new one. Where the system cannot swap two directories (not Linux), two renames: a kill
    between them leaves the old directory beside, hidden, and nothing at ``target``."""
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the old directory
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_partials(directory: str | os.PathLike) -> int:
    """Delete the temporary files that :func:`atomic_write` left in ``directory`` when its
    process was killed; returns how many. Call it only where no other writer is at work in
    ``directory`` (under its writer's lock)."""
    removed = 0
    for path in Path(directory).glob(f".*.*-*{_PARTIAL}*"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class WriterLock:
    """An exclusive lock on a directory that one process writes: ``fcntl.flock`` on ``path``,
    released by the kernel when the process ends, however it ends (no stale lock after a kill).

    The holder writes ``{"pid", "host", "tag"}`` into the lock file; :meth:`holder` reads it,
    so that a second writer can say who holds the directory and whether it writes the same
    thing (``tag``). Where ``fcntl`` is missing (Windows) the lock is not taken.
    """

    def __init__(self, path: str | os.PathLike, tag: str) -> None:
        self.path = Path(path)
        self.tag = tag
        self._fd: int | None = None

    def try_acquire(self, wait: bool = False) -> bool:
        """Take the lock; ``False`` when another process holds it (never with ``wait``)."""
        try:
            import fcntl
        except ImportError:  # no advisory locks here: proceed unlocked
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        payload = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "tag": self.tag}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        self._fd = fd
        return True

    def holder(self) -> dict:
        """What the holder wrote (``pid``, ``host``, ``tag``), or ``{}`` before it has."""
        try:
            with open(self.path, "rb") as f:
                found = json.loads(f.read(4096) or b"{}")
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an idle lock file is empty: a finished set's bytes name no pid
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
