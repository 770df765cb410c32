"""Where a feature set's images come from: local paths, and the URIs pyarrow's file systems read.

An input is an image file, a directory (searched recursively for images), or a list of images:
a ``.txt`` file (one per line; ``#`` starts a comment), or a ``.csv`` or ``.parquet`` file with
a ``path`` column. Each may be local or a URI (``s3://bucket/key``, ``gs://…``, ``file:///…``,
anything :func:`pyarrow.fs.FileSystem.from_uri` opens). Relative paths in a list are relative
to the list's directory. The result is sorted and without repeats, so the same inputs always
give the same list (and the same run identity), whichever engine reads them.

Listed images are not opened here: one that does not exist is reported when it is read, like
any unreadable image (``--skip-bad`` lists it in the index).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import InputError
from ..inference.device_decode import read_local_bytes
from ..inference.images import find_images, is_image_path
from ..util.integrity import not_a_regular_file

__all__ = ["list_images", "is_uri", "open_image", "readable", "LIST_SUFFIXES"]

LIST_SUFFIXES = (".txt", ".csv", ".parquet")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
MAX_IMAGE_BYTES = 1 << 30  # what one image read from a URI may hold


def is_uri(source: str) -> bool:
    """Whether ``source`` names a file by a URI (``scheme://…``) rather than a local path."""
    return bool(_URI.match(source))


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise InputError(f"{uri} is a URI: reading URIs needs pyarrow (pip install pyarrow)") from None
    if uri.startswith("gs://") and "retry_limit_seconds=" not in uri:
        # Without a network, Google Cloud's client retries for 19 minutes, deaf to Ctrl-C
        uri += ("&" if "?" in uri else "?") + f"retry_limit_seconds={GCS_RETRY_SECONDS}"
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # pyarrow: unknown scheme, missing credentials, bad bucket name
        raise InputError(f"{uri}: pyarrow's file systems cannot open it ({str(e)[:200]})") from None


#: How long a gs:// call keeps retrying (a URI's own retry_limit_seconds= wins).
GCS_RETRY_SECONDS = 15


def _uri_of(uri: str, path: str) -> str:
    """``path`` of ``uri``'s file system as a URI of the same scheme."""
    return f"{uri.split('://', 1)[0]}://{path}"


def _expand_uri(uri: str) -> list[str]:
    try:
        return _list_uri(uri)
    except InputError:
        raise
    except Exception as e:  # pyarrow's OSError and ArrowInvalid: no network, no such bucket, refused
        raise InputError(f"cannot list {uri}: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None


def _list_uri(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = _filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory and fs.type_name == "local":
        # as a local path is listed: symlinked directories are not followed (pyarrow's selector
        # follows them, and one sub/loop -> .. link repeated every image about 40 times)
        return [_uri_of(uri, str(p)) for p in find_images([path])]
    if info.type == pafs.FileType.Directory:
        found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        return sorted(
            _uri_of(uri, f.path) for f in found if f.type == pafs.FileType.File and is_image_path(Path(f.path))
        )
    if info.type == pafs.FileType.File:
        return _read_list(uri, _decode_list(_read_uri(uri), uri)) if _is_list(uri) else [uri]
    raise InputError(f"{uri} is neither an image file, a list of images nor a directory")


def _read_uri(uri: str) -> bytes:
    fs, path = _filesystem(uri)
    if fs.type_name == "local" and (problem := not_a_regular_file(path)):  # a FIFO would block the read
        raise InputError(f"{uri} {problem}")
    try:
        with fs.open_input_file(path) as f:
            if f.size() > MAX_IMAGE_BYTES:
                raise InputError(f"{uri} is {f.size():,} bytes, over the {MAX_IMAGE_BYTES:,} an input may have")
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{uri} does not exist") from None
    except OSError as e:
        raise InputError(f"cannot read {uri}: {str(e)[:200]}") from None


def _is_list(name: str) -> bool:
    """Whether ``name`` is a list of images by its suffix, in any case (``PATHS.TXT`` too)."""
    return name.lower().endswith(LIST_SUFFIXES)


def _decode_list(data: bytes, where: str) -> str:
    """A list's text: UTF-8, with the byte-order mark that Excel's "CSV UTF-8" writes stripped;
    :class:`InputError` naming the list and the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(
            f"{where}, line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the list as UTF-8"
        ) from None


def _read_list(where: str, text: str | None = None) -> list[str]:
    """The image paths a list file names (``text``: its contents, already read from a URI)."""
    suffix = os.path.splitext(where)[1].lower()
    if suffix == ".parquet":
        entries = _parquet_column(where)
    elif suffix == ".csv":
        if text is None:
            text = _decode_list(Path(where).read_bytes(), where)
        rows = csv.DictReader(io.StringIO(text))
        if "path" not in (rows.fieldnames or []):
            raise InputError(f"{where} has no 'path' column (columns: {rows.fieldnames})")
        entries = [r["path"] for r in rows]
    else:
        if text is None:
            text = _decode_list(Path(where).read_bytes(), where)
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    base = where.rsplit("/", 1)[0] if is_uri(where) else str(Path(where).parent)
    out = []
    for e in entries:
        if not isinstance(e, str) or not e.strip():
            raise InputError(f"{where} lists {e!r}, not a path")
        e = e.strip()
        relative = not is_uri(e) and not os.path.isabs(e)
        out.append((f"{base}/{e}" if is_uri(where) else str(Path(base) / e)) if relative else e)
    return out


def _parquet_column(where: str) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{where}: reading a parquet list needs pyarrow (pip install pyarrow)") from None
    try:
        if is_uri(where):
            fs, path = _filesystem(where)
            table = pq.read_table(path, columns=["path"], filesystem=fs)
        else:
            table = pq.read_table(where, columns=["path"])
    except Exception as e:  # pyarrow: no such column, not a parquet file
        raise InputError(f"{where}: no readable 'path' column ({str(e)[:200]})") from None
    return table.column("path").to_pylist()


def list_images(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Every image ``inputs`` name (see the module docstring), sorted, each once."""
    items = [str(os.fspath(i)) for i in inputs]
    found: list[str] = []
    local: list[str] = []
    for item in items:
        if is_uri(item):
            found += _expand_uri(item)
        elif _is_list(item) and os.path.isfile(item):
            found += _read_list(item)
        else:
            local.append(item)
    if local:
        found += [str(p) for p in find_images(local)]
    if not found:
        raise InputError(f"no images in {', '.join(items)}")
    return sorted(set(found))


def open_image(source: str | os.PathLike) -> Any:
    """What :func:`~resnet_zoo.inference.images.load_image` opens: a local path as it is, a URI's
    bytes as a named file object."""
    source = os.fspath(source)
    if not is_uri(source):
        return source
    f = io.BytesIO(_read_uri(source))
    f.name = source
    return f


def read_bytes(source: str | os.PathLike) -> bytes:
    """The bytes of an image named by a local path (a regular file) or a URI."""
    source = os.fspath(source)
    return _read_uri(source) if is_uri(source) else read_local_bytes(source)


def readable(transform: Callable[[Any], Any]) -> Callable[[str | os.PathLike], Any]:
    """``transform`` of an image named by a local path or a URI."""
    return _Readable(transform)


class _Readable:
    def __init__(self, transform: Callable[[Any], Any]) -> None:
        self.transform = transform

    def __call__(self, source: str | os.PathLike) -> Any:
        return self.transform(open_image(source))
