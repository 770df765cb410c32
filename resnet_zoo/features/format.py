"""The bytes of a feature set on disk, and of a features file: the one module that reads or
writes them.

A set is a directory: shard ``i`` is ``shard-NNNNN.safetensors`` (``features`` ``[n, C]``, the
image of each row in the header's metadata) or ``shard-NNNNN.parquet`` (a row per image:
``path`` and ``features``), recorded with its sha256 and its run's digest in
``.shard-NNNNN.json`` once complete; ``.run.json`` is the run's identity, ``.index.json`` the
identity plus every record, ``.lock`` the writer's lock. The bookkeeping files' names start with
a dot, so that the directory holds nothing but shards for the tools that read a directory of
parquet files (pyarrow and pandas skip ``.`` and ``_``, Hugging Face ``datasets`` only ``.``).
Sets written before (``index.json``, ``run.json``, ``shard-NNNNN.json``) stay readable, and a
resumed run renames their files. Everything read here is checked like any untrusted file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError, ConfigError, ResNetZooError
from ..pretrained.files import load_safetensors
from ..util.atomic import atomic_write, promote, write_text_atomic
from ..util.checks import is_int
from ..util.integrity import is_sha256, not_a_regular_file, printable, sha256_file

__all__ = [
    "SET_FORMAT",
    "RUN_FILE",
    "INDEX_FILE",
    "LOCK_FILE",
    "STORE_DTYPES",
    "FILE_FORMATS",
    "PARQUET_DTYPES",
    "run_sha256",
    "shard_name",
    "record_name",
    "migrate_layout",
    "read_shard",
    "write_shard",
    "arrow_table",
    "optional_module",
    "encode_paths",
    "decode_paths",
    "MAX_PATHS_BYTES",
    "checked_record",
    "checked_index",
    "index_file",
    "read_index",
    "shard_done",
    "write_index",
]

SET_FORMAT = "resnet_zoo.features/1"
RUN_FILE = ".run.json"
INDEX_FILE = ".index.json"
# The names of the first layout, read where the new ones are absent, renamed by a resumed run.
OLD_RUN_FILE = "run.json"
OLD_INDEX_FILE = "index.json"
LOCK_FILE = ".lock"  # held by the run writing the set (a dot: pyarrow and pandas skip it)
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# Shard file formats: safetensors (the default; features and a paths tensor) or parquet (one
# row per image: path, features as a fixed-size list; the model and weights in its metadata).
FILE_FORMATS = ("safetensors", "parquet")
PARQUET_DTYPES = ("float32", "float16")  # parquet has no bfloat16


# The index is the run's identity (run.json) plus these keys.
_INDEX_KEYS = ("num_features", "shards", "num_bad", "run_sha256")


def run_sha256(run: dict) -> str:
    """The digest of a run's identity (what ``run.json`` holds): every shard record carries it,
    and only records of the run at hand are resumed or indexed."""
    return hashlib.sha256(json.dumps(run, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _identity_sha256(index: dict) -> str:
    return run_sha256({k: v for k, v in index.items() if k not in _INDEX_KEYS})


def shard_name(i: int, fmt: str = "safetensors") -> str:
    return f"shard-{i:05d}.{fmt}"


def record_name(i: int) -> str:
    return f".shard-{i:05d}.json"


def migrate_layout(directory: Path) -> None:
    """Rename the bookkeeping files of the first layout (``index.json``, ``run.json``,
    ``shard-NNNNN.json``) to today's names, so that a resumed set keeps its complete shards and
    leaves nothing beside them that a parquet reader would trip on. Each rename is atomic and
    done only where the new name is free: a run killed half-way is finished by the next."""
    olds = [directory / OLD_RUN_FILE, directory / OLD_INDEX_FILE, *sorted(directory.glob("shard-[0-9]*.json"))]
    for old in olds:
        new = directory / ("." + old.name)
        if os.path.isfile(old) and not os.path.islink(old) and not os.path.lexists(new):
            promote(old, new)


# A shard's rows x width bound, checked from its header or footer before its data are read:
# 2**28 values (1 GiB of float32), 30 times the largest default shard (4096 x 2048).
MAX_SHARD_VALUES = 1 << 28

# What the index declares of a shard: its rows, the width of its features, their stored dtype.
Expect = tuple[int, "int | None", str]


def _check_declared(path: Path, rows: int, width: int, dtype: str, expect: Expect) -> None:
    n, want_width, want_dtype = expect
    if dtype != want_dtype or (want_width is not None and width != want_width) or rows != n:
        raise CheckpointError(
            f"{path} holds {rows} rows of {width} {dtype} features where its index declares {n} rows of "
            f"{want_width} {want_dtype}: re-run the command to rewrite it"
        )
    if rows * width > MAX_SHARD_VALUES:
        raise CheckpointError(
            f"{path}: {rows:,} rows x {width:,} features is more than a shard holds ({MAX_SHARD_VALUES:,})"
        )


def check_parquet_shard(path: Path, expect: Expect) -> None:
    """The footer of a parquet shard against its index, before any row is read: its row count,
    and ``features`` a fixed-size list of float32 or float16 of the declared width (a 17 kB shard
    of 2,000,000 rows, or features stored as strings, structs or decimals, are refused here)."""
    pa = optional_module("pyarrow", "parquet shards")
    pq = optional_module("pyarrow.parquet", "parquet shards")
    try:
        footer = pq.ParquetFile(str(path))
        schema, rows = footer.schema_arrow, footer.metadata.num_rows
    except Exception as e:  # pyarrow's errors: a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable parquet shard: {str(e)[:200]}") from None
    ftype = schema.field("features").type if "features" in schema.names else None
    ptype = schema.field("path").type if "path" in schema.names else None
    if ftype is None or not pa.types.is_fixed_size_list(ftype) or ptype != pa.string():
        raise CheckpointError(
            f"{path}: 'features' is {ftype} and 'path' {ptype}, not a fixed-size list of floats and strings"
        )
    names = {pa.float32(): "float32", pa.float16(): "float16"}
    _check_declared(path, rows, ftype.list_size, names.get(ftype.value_type, str(ftype.value_type)), expect)


def read_shard(path: Path, fmt: str, expect: Expect | None = None) -> tuple[torch.Tensor | None, list[str] | None]:
    """(features [n, C], paths) of one shard file (None where it does not hold them).
    ``expect`` (rows, width, stored dtype, as the index declares them) is checked from the
    file's header or footer before its data are read."""
    if fmt == "parquet":
        if expect is not None:
            check_parquet_shard(path, expect)
        pq = optional_module("pyarrow.parquet", "parquet shards")
        try:
            table = pq.read_table(str(path))
            column = table.column("features").combine_chunks()
            width = column.type.list_size
            values = column.flatten().to_numpy(zero_copy_only=False)
            paths = table.column("path").to_pylist()
        except Exception as e:  # pyarrow's errors: a damaged or foreign file
            raise CheckpointError(f"{path} is not a readable parquet shard: {str(e)[:200]}") from None
        if not all(isinstance(p, str) for p in paths):
            return None, None
        return torch.from_numpy(values.copy()).view(-1, width), paths
    if expect is not None:
        _safetensors_layout(path, expect)
    tensors, metadata = load_safetensors(path)
    feats = tensors.get("features")
    if feats is None or feats.dim() != 2 or "paths" not in (metadata or {}):
        return feats, None
    return feats, decode_paths(metadata, feats.shape[0], path)


def _safetensors_layout(path: Path, expect: Expect) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            if "features" not in f.keys():
                raise CheckpointError(f"{path} has no 'features' tensor: re-run the command to rewrite it")
            view = f.get_slice("features")
            shape, dtype = view.get_shape(), str(view.get_dtype())
    except CheckpointError:
        raise
    except Exception as e:  # a damaged header: load_safetensors names it
        raise CheckpointError(f"{path} is not a readable safetensors shard ({type(e).__name__})") from None
    names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
    if len(shape) != 2:
        raise CheckpointError(f"{path}: 'features' has shape {shape}, not [rows, width]")
    _check_declared(path, shape[0], shape[1], names.get(dtype, dtype), expect)


def write_shard(out: Path, i: int, run: dict, feats: torch.Tensor, kept: list[str], bad: list[dict]) -> None:
    """Shard ``i`` of the set in ``out`` (atomically): ``feats`` ``[n, C]`` already in the stored
    dtype, the paths ``kept`` of its rows, the unreadable images ``bad`` (``{path, error}``);
    then its record, with its sha256 and the run's digest."""
    width = feats.shape[1]
    fmt = run["file_format"]
    name = shard_name(i, fmt)
    with atomic_write(out / name) as tmp:
        if fmt == "parquet":
            table = arrow_table(
                feats, kept, width, {"model": run["model"], "weights": run["weights"]}, "parquet shards"
            )
            optional_module("pyarrow.parquet", "parquet shards").write_table(table, str(tmp))
        else:
            # One metadata entry: safetensors writes several in no fixed order, and a shard
            # rewritten on resume must have the same bytes (the model is in the index).
            save_file({"features": feats.contiguous()}, str(tmp), metadata={"paths": encode_paths(kept, out / name)})
    record = {
        "file": name,
        "rows": len(kept),
        "sha256": sha256_file(out / name),
        "bad": bad,
        "run_sha256": run_sha256(run),
    }
    write_text_atomic(out / record_name(i), json.dumps(record, indent=1) + "\n")


def arrow_table(feats: torch.Tensor, paths: list[str], width: int, metadata: dict[str, str], needed_by: str) -> Any:
    """One row per image: ``path`` and ``features`` as a fixed-size list of float16 (for
    float16 features) or float32 (anything else, bfloat16 widened); ``metadata`` on the schema."""
    pa = optional_module("pyarrow", needed_by)
    half = feats.dtype == torch.float16
    values = (feats if half else feats.float()).contiguous().reshape(-1).numpy()
    column = pa.FixedSizeListArray.from_arrays(pa.array(values, type=pa.float16() if half else pa.float32()), width)
    return pa.table({"path": pa.array(paths, type=pa.string()), "features": column}, metadata=metadata)


def optional_module(module: str, needed_by: str) -> Any:
    """``module``, or a ResNetZooError saying that ``needed_by`` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ResNetZooError(
            f"{needed_by} needs {package}: pip install {package} (or pip install 'resnet_zoo[arrow]')"
        ) from None


# Image paths live in the safetensors header's metadata, as a JSON list in row order, in every
# features file: the single file and each shard of a set. A header is bounded (MAX_HEADER_BYTES).
MAX_PATHS_BYTES = 8 << 20


def encode_paths(paths: Sequence[str | os.PathLike], where: str | os.PathLike) -> str:
    """``paths`` as the header's ``paths`` entry, or ConfigError when it would not fit a header."""
    text = json.dumps([str(p) for p in paths])
    if len(text.encode("utf-8")) > MAX_PATHS_BYTES:
        raise ConfigError(
            f"{where}: the paths of {len(paths):,} images take {len(text.encode()):,} bytes, "
            f"over the {MAX_PATHS_BYTES:,} a safetensors header holds: write fewer images a "
            "file (a feature set with a smaller --shard-size)"
        )
    return text


def decode_paths(metadata: dict | None, rows: int, where: str | os.PathLike) -> list[str]:
    """The ``rows`` image paths of a features file's metadata, or CheckpointError saying what is wrong."""
    try:
        paths = json.loads((metadata or {})["paths"])
    except (KeyError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where} is not a resnet_zoo features file (no image paths: {e})") from None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths) or len(paths) != rows:
        raise CheckpointError(
            f"{where}: {rows} feature rows but the metadata lists "
            f"{len(paths) if isinstance(paths, list) else 'no'} paths"
        )
    return paths


# Bounds on the JSON files of a set, checked before anything is read. A record holds its shard's
# unreadable images at ~300 bytes each (4,096 a shard by default: ~1.2 MB); an index is every
# record: 32 MiB hold ~100,000 unreadable images, or the records of ~100 million images.
MAX_INDEX_BYTES = 32 << 20
MAX_RECORD_BYTES = 16 << 20


def read_json(path: Path, max_bytes: int) -> Any:
    """The JSON document in ``path``: a regular file of at most ``max_bytes``. Anything else
    (a FIFO, a device, a link to one, a larger file) is an OSError saying what it is; opened
    without blocking, so that a FIFO swapped in after a check cannot hang the reader."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} {not_a_regular_file(path) or 'is not a regular file'}")
        if st.st_size > max_bytes:
            raise OSError(f"{path} is {st.st_size:,} bytes, over the {max_bytes:,} it may have")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"{path} grew past the {max_bytes:,} bytes it may have")
    return json.loads(data.decode("utf-8"))


def checked_record(record: object, i: int, where: Path, fmt: str = "safetensors") -> dict:
    """A shard record as written by ``_write_shard``, or :class:`CheckpointError` naming what is
    wrong. It must name its own shard file, ``shard-NNNNN.safetensors``: nothing else."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{where}: the record of shard {i} {problem}; re-run the command (--overwrite to start over)"
        )

    if not isinstance(record, dict):
        raise bad(f"is a {type(record).__name__}, not an object")
    if record.get("file") != shard_name(i, fmt):
        raise bad(f"names the file {printable(str(record.get('file')))[:80]!r}, not its own {shard_name(i, fmt)}")
    rows = record.get("rows")
    if not is_int(rows, 0):
        raise bad(f"counts {printable(repr(rows))[:40]} rows, not a count")
    if not is_sha256(record.get("sha256")):
        raise bad("has no sha256 of 64 hex digits")
    if "run_sha256" in record and not is_sha256(record["run_sha256"]):
        raise bad("has a run_sha256 that is not 64 hex digits")
    items = record.get("bad")
    if not isinstance(items, list) or not all(
        isinstance(b, dict) and isinstance(b.get("path"), str) and isinstance(b.get("error"), str) for b in items
    ):
        raise bad("lists its unreadable images as something other than {path, error} objects")
    return record


def checked_index(index: object, where: Path) -> dict:
    if not isinstance(index, dict) or index.get("format") != SET_FORMAT:
        raise CheckpointError(f"{where} is not a resnet_zoo feature set index")
    shards, width = index.get("shards"), index.get("num_features")
    if not isinstance(shards, list):
        raise CheckpointError(f"{where}: 'shards' must be a list of shard records")
    if width is not None and not is_int(width, 1):
        raise CheckpointError(f"{where}: 'num_features' must be a positive integer, got {printable(repr(width))[:40]}")
    if shards and width is None:
        raise CheckpointError(f"{where}: 'num_features' is missing")
    if index.get("store_dtype") not in STORE_DTYPES:
        raise CheckpointError(f"{where}: 'store_dtype' must be one of {list(STORE_DTYPES)}")
    fmt = index.get("file_format", "safetensors")
    if fmt not in FILE_FORMATS:
        raise CheckpointError(f"{where}: 'file_format' must be one of {list(FILE_FORMATS)}")
    run_id = index.get("run_sha256")
    shard_size = index.get("shard_size")
    for i, record in enumerate(shards):
        checked_record(record, i, where, fmt)
        if is_int(shard_size, 1) and record["rows"] > shard_size:
            raise CheckpointError(
                f"{where}: shard {i} counts {record['rows']:,} rows, more than the set's shard size "
                f"{shard_size:,}; re-run the command with --overwrite to start over"
            )
        if run_id is not None and record.get("run_sha256") != run_id:
            raise CheckpointError(
                f"{where}: shard {i} was written by another run than the index's "
                "(another model, input list or settings); re-run the command with "
                "--overwrite to start over"
            )
    if run_id is not None and run_id != _identity_sha256(index):
        raise CheckpointError(
            f"{where}: its run_sha256 is not the digest of the run it describes "
            "(edited or mixed); re-run the command with --overwrite to start over"
        )
    return index


def index_file(directory: Path) -> Path:
    """The index of the set in ``directory``: ``.index.json``, or ``index.json`` in a set of
    the first layout."""
    path = directory / INDEX_FILE
    if not os.path.lexists(path) and os.path.lexists(directory / OLD_INDEX_FILE):
        return directory / OLD_INDEX_FILE
    return path


def read_index(directory: Path) -> dict:
    """The checked index (:func:`index_file`) of the complete set in ``directory``: bounded in
    size, every record naming its own shard, every record of the index's run."""
    path = index_file(directory)
    try:
        index = read_json(path, MAX_INDEX_BYTES)
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(
            f"{directory} holds no complete feature set ({path.name}: {e}); "
            "run `resnet-zoo features` to write or finish it"
        ) from None
    return checked_index(index, path)


def shard_done(directory: Path, i: int, fmt: str, run_id: str) -> dict | None:
    """The record of shard ``i`` if the shard is complete, matches it and was written by the
    run ``run_id`` (a record that names another file, is malformed, or is another run's, is
    not: the shard is written again)."""
    try:
        path = directory / record_name(i)
        record = checked_record(read_json(path, MAX_RECORD_BYTES), i, path, fmt)
        if record.get("run_sha256") != run_id:
            return None
        shard = directory / shard_name(i, fmt)
        if not_a_regular_file(shard) is None and sha256_file(shard) == record["sha256"]:
            return record
    except (OSError, ValueError, RecursionError):  # CheckpointError is a ValueError
        pass
    return None


def write_index(out: Path, run: dict, n_shards: int) -> None:
    """``.index.json``: the run's identity, every shard's record (each checked complete and of
    this run), the width of the features and the count of unreadable images."""
    records = []
    run_id = run_sha256(run)
    for i in range(n_shards):
        record = shard_done(out, i, run["file_format"], run_id)
        if record is None:
            raise ResNetZooError(
                f"{out / shard_name(i, run['file_format'])} is missing or damaged after every process "
                "finished; re-run the command to write it"
            )
        records.append(record)
    num_features = None
    if records:
        feats, _ = read_shard(out / shard_name(0, run["file_format"]), run["file_format"])
        num_features = None if feats is None else feats.shape[1]
    index = {
        **run,
        "num_features": num_features,
        "shards": records,
        "num_bad": sum(len(r["bad"]) for r in records),
        "run_sha256": run_id,
    }
    write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
