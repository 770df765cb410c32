"""Reading a feature set: a directory of numbered shards and the ``index.json`` that lists them.

Shard ``i`` is ``shard-NNNNN.safetensors`` (``features`` ``[n, C]`` and ``paths``, the image of
each row) or ``shard-NNNNN.parquet`` (a row per image: ``path`` and ``features``), recorded with
its sha256 in ``shard-NNNNN.json`` when complete; the index is every record plus the run's
identity. Everything read here is checked like any untrusted file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from ..util.checks import check_positive_int, is_int
from ..errors import CheckpointError, ResNetZooError
from ..util.integrity import is_sha256, not_a_regular_file, printable, sha256_file
from ..pretrained.files import load_safetensors
from .file import decode_paths

__all__ = ["FeatureSet", "read_feature_set", "run_sha256", "STORE_DTYPES", "FILE_FORMATS", "PARQUET_DTYPES"]

SET_FORMAT = "resnet_zoo.features/1"
RUN_FILE = "run.json"
INDEX_FILE = "index.json"
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


def _shard_name(i: int, fmt: str = "safetensors") -> str:
    return f"shard-{i:05d}.{fmt}"


def _read_shard(path: Path, fmt: str) -> tuple[torch.Tensor | None, list[str] | None]:
    """(features [n, C], paths) of one shard file (None where it does not hold them)."""
    if fmt == "parquet":
        pq = _optional("pyarrow.parquet", "parquet shards")
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
    tensors, metadata = load_safetensors(path)
    feats = tensors.get("features")
    if "paths" in tensors:  # a set written by resnet_zoo before the paths moved to the header
        return feats, _legacy_paths(tensors["paths"], path)
    if feats is None or feats.dim() != 2 or "paths" not in (metadata or {}):
        return feats, None
    return feats, decode_paths(metadata, feats.shape[0], path)


def _record_name(i: int) -> str:
    return f"shard-{i:05d}.json"


@dataclass(frozen=True)
class FeatureSet:
    """A directory written by :func:`write_feature_set`: ``index.json`` and numbered shards."""

    directory: Path
    index: dict

    @property
    def num_images(self) -> int:
        return sum(s["rows"] for s in self.index["shards"])

    def shards(self, verify: bool = True):
        """``(features [n, C], paths)`` of each shard in order; ``verify`` checks its sha256.

        Each shard is the file its record names, ``shard-NNNNN.safetensors`` in this directory
        (a record naming anything else was refused when the index was read), and must hold the
        rows its record counts."""
        fmt = self.index.get("file_format", "safetensors")
        for i, shard in enumerate(self.index["shards"]):
            path = self.directory / _shard_name(i, fmt)
            if problem := not_a_regular_file(path):
                raise CheckpointError(f"{path} {problem}: the feature set is incomplete; re-run the "
                                      "command to rewrite it")
            if verify and sha256_file(path) != shard["sha256"]:
                raise CheckpointError(f"{path}: sha256 differs from {self.directory / INDEX_FILE}; "
                                      "the shard was modified or damaged: re-run the command to rewrite it")
            feats, paths = _read_shard(path, fmt)
            width = self.index["num_features"]
            if (feats is None or feats.dim() != 2 or paths is None or feats.shape[0] != shard["rows"]
                    or len(paths) != shard["rows"] or (width is not None and feats.shape[1] != width)):
                raise CheckpointError(f"{path} does not hold the {shard['rows']} rows of {width} features "
                                      "and their paths that its record counts: re-run the command to rewrite it")
            yield feats, paths

    def load(self, verify: bool = True) -> tuple[torch.Tensor, list[str]]:
        """Every feature as one ``[N, C]`` tensor, and the image of each row."""
        feats, paths = [], []
        for f, p in self.shards(verify):
            feats.append(f)
            paths += p
        if not feats:
            return torch.empty(0, self.index["num_features"] or 0), []
        return torch.cat(feats), paths

    def iter_batches(self, batch_size: int = 4096, verify: bool = True) -> Iterator[tuple[Any, list[str]]]:
        """``(features, paths)`` in batches of ``batch_size`` rows (the last may be shorter),
        features as a float32 numpy array ``[n, C]`` whatever the stored dtype; one shard is in
        memory at a time, never the whole set."""
        check_positive_int("batch_size", batch_size)
        held: torch.Tensor | None = None
        held_paths: list[str] = []
        for feats, paths in self.shards(verify):
            held = feats if held is None else torch.cat([held, feats])
            held_paths += paths
            while len(held_paths) >= batch_size:
                yield held[:batch_size].float().numpy(), held_paths[:batch_size]
                held, held_paths = held[batch_size:], held_paths[batch_size:]
        if held is not None and held_paths:
            yield held.float().numpy(), held_paths

    def to_numpy(self, verify: bool = True) -> Any:
        """Every feature as one float32 numpy array ``[N, C]`` (bfloat16 and float16 shards
        are widened), rows in the order of :meth:`load`'s paths."""
        feats, _ = self.load(verify)
        return feats.float().numpy()

    def to_arrow(self, verify: bool = True) -> Any:
        """A pyarrow Table, one row per image: ``path`` (string) and ``features`` (a
        fixed-size list of float32, or float16 for float16 shards); the model and weights tag
        in the schema's metadata. Needs pyarrow."""
        feats, paths = self.load(verify)
        return _arrow_table(feats, paths, self.index["num_features"] or 0,
                            {"model": str(self.index.get("model")), "weights": str(self.index.get("weights"))},
                            "FeatureSet.to_arrow")

    def to_pandas(self, verify: bool = True) -> Any:
        """A pandas DataFrame: ``path`` and ``features`` (one float32 numpy array per row).
        Needs pandas."""
        pd = _optional("pandas", "FeatureSet.to_pandas")
        feats, paths = self.load(verify)
        array = feats.float().numpy()
        return pd.DataFrame({"path": paths, "features": list(array)})

    @property
    def bad(self) -> list[dict]:
        """Images that could not be read (with ``--skip-bad``): path and error."""
        return [b for s in self.index["shards"] for b in s["bad"]]


def _arrow_table(feats: torch.Tensor, paths: list[str], width: int, metadata: dict[str, str],
                 what: str) -> Any:
    """One row per image: ``path`` and ``features`` as a fixed-size list of float16 (for
    float16 features) or float32 (anything else, bfloat16 widened); ``metadata`` on the schema."""
    pa = _optional("pyarrow", what)
    half = feats.dtype == torch.float16
    values = (feats if half else feats.float()).contiguous().reshape(-1).numpy()
    column = pa.FixedSizeListArray.from_arrays(pa.array(values, type=pa.float16() if half else pa.float32()),
                                               width)
    return pa.table({"path": pa.array(paths, type=pa.string()), "features": column}, metadata=metadata)


def _optional(module: str, what: str) -> Any:
    """``module``, or a ResNetZooError saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ResNetZooError(f"{what} needs {package}: pip install {package} "
                             "(or pip install 'resnet_zoo[arrow]')") from None


def _legacy_paths(t: torch.Tensor, where: Path) -> list[str]:
    """The paths of a shard written before they moved to the header: a uint8 tensor of JSON."""
    try:
        if t.dtype != torch.uint8 or t.dim() != 1:
            raise ValueError(f"a {t.dtype} tensor of shape {list(t.shape)}, not uint8 bytes")
        paths = json.loads(bytes(t.numpy().tobytes()).decode("utf-8")) if t.numel() else []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("not a list of strings")
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: the image paths do not decode ({e})") from None
    return paths


MAX_INDEX_BYTES = 256 << 20


def _checked_record(record: object, i: int, where: Path, fmt: str = "safetensors") -> dict:
    """A shard record as written by ``_write_shard``, or :class:`CheckpointError` naming what is
    wrong. It must name its own shard file, ``shard-NNNNN.safetensors``: nothing else."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where}: the record of shard {i} {what}; re-run the command "
                               "(--overwrite to start over)")

    if not isinstance(record, dict):
        raise bad(f"is a {type(record).__name__}, not an object")
    if record.get("file") != _shard_name(i, fmt):
        raise bad(f"names the file {printable(str(record.get('file')))[:80]!r}, not its own {_shard_name(i, fmt)}")
    rows = record.get("rows")
    if not is_int(rows, 0):
        raise bad(f"counts {printable(repr(rows))[:40]} rows, not a count")
    if not is_sha256(record.get("sha256")):
        raise bad("has no sha256 of 64 hex digits")
    if "run_sha256" in record and not is_sha256(record["run_sha256"]):
        raise bad("has a run_sha256 that is not 64 hex digits")
    items = record.get("bad")
    if not isinstance(items, list) or not all(
            isinstance(b, dict) and isinstance(b.get("path"), str) and isinstance(b.get("error"), str)
            for b in items):
        raise bad("lists its unreadable images as something other than {path, error} objects")
    return record


def _checked_index(index: object, where: Path) -> dict:
    if not isinstance(index, dict) or index.get("format") != SET_FORMAT:
        raise CheckpointError(f"{where} is not a resnet_zoo feature set index")
    shards, width = index.get("shards"), index.get("num_features")
    if not isinstance(shards, list):
        raise CheckpointError(f"{where}: 'shards' must be a list of shard records")
    if width is not None and not is_int(width, 1):
        raise CheckpointError(f"{where}: 'num_features' must be a positive integer, got "
                              f"{printable(repr(width))[:40]}")
    if shards and width is None:
        raise CheckpointError(f"{where}: 'num_features' is missing")
    if index.get("store_dtype") not in STORE_DTYPES:
        raise CheckpointError(f"{where}: 'store_dtype' must be one of {list(STORE_DTYPES)}")
    fmt = index.get("file_format", "safetensors")
    if fmt not in FILE_FORMATS:
        raise CheckpointError(f"{where}: 'file_format' must be one of {list(FILE_FORMATS)}")
    run_id = index.get("run_sha256")
    for i, record in enumerate(shards):
        _checked_record(record, i, where, fmt)
        if run_id is not None and record.get("run_sha256") != run_id:
            raise CheckpointError(f"{where}: shard {i} was written by another run than the index's "
                                  "(another model, input list or settings); re-run the command with "
                                  "--overwrite to start over")
    if run_id is not None and run_id != _identity_sha256(index):
        raise CheckpointError(f"{where}: its run_sha256 is not the digest of the run it describes "
                              "(edited or mixed); re-run the command with --overwrite to start over")
    return index


def read_feature_set(directory: str | os.PathLike) -> FeatureSet:
    """The feature set in ``directory`` (complete: its ``index.json`` written), with its index
    checked like any untrusted file: every record names its own shard in ``directory``."""
    directory = Path(directory)
    path = directory / INDEX_FILE
    try:
        if problem := not_a_regular_file(path):
            raise OSError(problem)
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise OSError(f"{path.stat().st_size:,} bytes, over the {MAX_INDEX_BYTES:,} an index may have")
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{directory} holds no complete feature set ({INDEX_FILE}: {e}); "
                              "run `resnet-zoo features` to write or finish it") from None
    return FeatureSet(directory, _checked_index(index, path))



def _done(directory: Path, i: int, fmt: str, run_id: str) -> dict | None:
    """The record of shard ``i`` if the shard is complete, matches it and was written by the
    run ``run_id`` (a record that names another file, is malformed, or is another run's, is
    not: the shard is written again)."""
    try:
        record = _checked_record(json.loads((directory / _record_name(i)).read_text()), i,
                                 directory / _record_name(i), fmt)
        if record.get("run_sha256") != run_id:
            return None
        shard = directory / _shard_name(i, fmt)
        if not_a_regular_file(shard) is None and sha256_file(shard) == record["sha256"]:
            return record
    except (OSError, ValueError, RecursionError):  # CheckpointError is a ValueError
        pass
    return None

