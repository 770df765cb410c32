"""Say why a path that should be a regular file is not one; stdlib only.

``Path.is_file()`` is False for a missing file, a directory, ``/dev/zero`` and a FIFO alike; the
messages must tell them apart, and a FIFO must never be opened (``open`` waits for a writer).
"""

from __future__ import annotations

import os
import stat

__all__ = ["not_a_regular_file"]

_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISCHR, "is a character device, not a file"),
    (stat.S_ISBLK, "is a block device, not a file"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """``None`` for a regular file (symbolic links followed), else what the path is instead:
    "does not exist", "is a directory", "is a character device, not a file", ..."""
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
