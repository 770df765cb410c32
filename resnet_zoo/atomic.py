"""Write a file so that readers see the old file or the whole new one, never a part; stdlib only."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_write", "write_text_atomic", "promote"]


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
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{os.urandom(4).hex()}.partial{path.suffix}")
    try:
        yield tmp
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
