"""Reading a feature set (its bytes are :mod:`.format`'s): the index's shards as torch,
numpy, pyarrow or pandas.

Shard ``i`` is ``shard-NNNNN.safetensors`` (``features`` ``[n, C]`` and ``paths``, the image of
each row) or ``shard-NNNNN.parquet`` (a row per image: ``path`` and ``features``), recorded with
its sha256 in ``.shard-NNNNN.json`` when complete; the index is every record plus the run's
identity. Everything read here is checked like any untrusted file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import CheckpointError, UnknownOptionError
from ..util.checks import check_positive_int
from ..util.integrity import not_a_regular_file, sha256_file
from .format import (
    arrow_table,
    check_parquet_shard,
    index_file,
    optional_module,
    read_index,
    read_shard,
    shard_name,
)
from .hub import fetch_feature_set, push_feature_set


@dataclass(frozen=True)
class FeatureSet:
    """A directory written by :func:`write_feature_set`: ``.index.json`` and numbered shards."""

    directory: Path
    index: dict

    @property
    def num_images(self) -> int:
        return sum(s["rows"] for s in self.index["shards"])

    @property
    def index_path(self) -> Path:
        """The set's index file (``index.json`` in a set of the first layout)."""
        return index_file(self.directory)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload this set as the Hub dataset repo ``repo_id``, with its card; returns the commit.
        ``private``, ``token``, ``revision`` and ``commit_message`` as huggingface_hub takes them."""
        shards = [self.shard_path(i, verify=True) for i in range(len(self.index["shards"]))]
        return push_feature_set(self.index, self.index_path, shards, repo_id, **kwargs)

    def shard_path(self, i: int, verify: bool = True) -> Path:
        """Shard ``i``'s file, a regular file whose sha256 (with ``verify``) is its record's."""
        shard = self.index["shards"][i]
        path = self.directory / shard_name(i, self.index.get("file_format", "safetensors"))
        if problem := not_a_regular_file(path):
            raise CheckpointError(f"{path} {problem}: the feature set is incomplete; re-run the command to rewrite it")
        if verify and sha256_file(path) != shard["sha256"]:
            raise CheckpointError(
                f"{path}: sha256 differs from {self.index_path}; "
                "the shard was modified or damaged: re-run the command to rewrite it"
            )
        return path

    def shards(self, verify: bool = True):
        """``(features [n, C], paths)`` of each shard in order; ``verify`` checks its sha256.

        Each shard is the file its record names, ``shard-NNNNN.safetensors`` in this directory
        (a record naming anything else was refused when the index was read), and must hold the
        rows its record counts."""
        fmt = self.index.get("file_format", "safetensors")
        for i, shard in enumerate(self.index["shards"]):
            path = self.shard_path(i, verify)
            width = self.index["num_features"]
            feats, paths = read_shard(path, fmt, (shard["rows"], width, self.index["store_dtype"]))
            if (
                feats is None
                or feats.dim() != 2
                or paths is None
                or feats.shape[0] != shard["rows"]
                or len(paths) != shard["rows"]
                or (width is not None and feats.shape[1] != width)
            ):
                raise CheckpointError(
                    f"{path} does not hold the {shard['rows']} rows of {width} features "
                    "and their paths that its record counts: re-run the command to rewrite it"
                )
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
        for feats, paths in self._chunks(batch_size, verify):
            held = feats if held is None else torch.cat([held, feats])
            held_paths += paths
            while len(held_paths) >= batch_size:
                yield held[:batch_size].float().numpy(), held_paths[:batch_size]
                held, held_paths = held[batch_size:], held_paths[batch_size:]
        if held is not None and held_paths:
            yield held.float().numpy(), held_paths

    def _chunks(self, batch_size: int, verify: bool) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """What :meth:`shards` gives, a parquet shard streamed in record batches (its footer
        checked first), so that a few rows never cost the whole shard's memory."""
        if self.index.get("file_format", "safetensors") != "parquet":
            yield from self.shards(verify)
            return
        pq = optional_module("pyarrow.parquet", "parquet shards")
        width = self.index["num_features"]
        for i, shard in enumerate(self.index["shards"]):
            path = self.shard_path(i, verify)
            check_parquet_shard(path, (shard["rows"], width, self.index["store_dtype"]))
            for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=batch_size, columns=["path", "features"]):
                values = batch.column(1).flatten().to_numpy(zero_copy_only=False)
                yield torch.from_numpy(values.copy()).view(-1, width), batch.column(0).to_pylist()

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
        if not paths and not self.index["num_features"]:  # a set of no images: an empty table
            pa = optional_module("pyarrow", "FeatureSet.to_arrow")
            return pa.table({"path": pa.array([], pa.string()), "features": pa.array([], pa.list_(pa.float32()))})
        return arrow_table(
            feats,
            paths,
            self.index["num_features"] or 0,
            {"model": str(self.index.get("model")), "weights": str(self.index.get("weights"))},
            "FeatureSet.to_arrow",
        )

    def to_pandas(self, verify: bool = True) -> Any:
        """A pandas DataFrame: ``path`` and ``features`` (one float32 numpy array per row).
        Needs pandas."""
        pd = optional_module("pandas", "FeatureSet.to_pandas")
        feats, paths = self.load(verify)
        array = feats.float().numpy()
        return pd.DataFrame({"path": paths, "features": list(array)})

    @property
    def bad(self) -> list[dict]:
        """Images that could not be read (with ``--skip-bad``): path and error."""
        return [b for s in self.index["shards"] for b in s["bad"]]


def read_feature_set(directory: str | os.PathLike, **hub_kwargs: Any) -> FeatureSet:
    """The feature set in ``directory`` (complete: its ``.index.json`` written), with its index
    checked like any untrusted file: every record names its own shard in ``directory``.

    ``"hf-hub:owner/name[@rev]"`` names a dataset repo made by :meth:`FeatureSet.push_to_hub`:
    it is downloaded into the Hub cache (every shard checked against the index's sha256) and
    read from there, offline too once cached; ``hub_kwargs``: ``cache_dir``, ``token``,
    ``local_files_only``."""
    if isinstance(directory, str) and directory.startswith("hf-hub:"):
        return FeatureSet(*fetch_feature_set(directory, **hub_kwargs))
    if hub_kwargs:
        raise UnknownOptionError(f"{sorted(hub_kwargs)} apply to 'hf-hub:' sets only, not to the directory {directory}")
    directory = Path(directory)
    return FeatureSet(directory, read_index(directory))
