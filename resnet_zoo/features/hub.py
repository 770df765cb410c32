"""Feature sets on the Hugging Face Hub: a finished set pushed as a dataset repo with its card,
and ``read_feature_set("hf-hub:owner/name[@rev]")`` fetching one into the Hub cache.

The repo holds the set's shards, its ``.index.json`` and a ``README.md`` card. A download is the
weights' download (:func:`resnet_zoo.pretrained.hub.download`: paths confined to the cache,
bodies bounded, ETags checked): the index first, then every shard it records, each pinned to the
sha256 of its record and to the index's commit, so that a cached set works offline and a
shard that differs from its index is never served.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..pretrained import hub
from ..pretrained.resolve import parse_hf_hub
from ..util.integrity import check_repo_id
from .format import (
    INDEX_FILE,
    MAX_INDEX_BYTES,
    MAX_PATHS_BYTES,
    STORE_DTYPES,
    checked_index,
    read_json,
    shard_name,
)

__all__ = ["HUB_PREFIX", "push_feature_set", "fetch_feature_set", "dataset_card"]

HUB_PREFIX = "hf-hub:"


def _shard_bound(rows: int, width: int | None, store_dtype: str) -> int:
    """The most bytes a shard of ``rows`` rows may have: its values, the paths (a header holds
    at most MAX_PATHS_BYTES) and 1 MiB of format overhead."""
    itemsize = STORE_DTYPES[store_dtype].itemsize
    return rows * (width or 0) * itemsize + MAX_PATHS_BYTES + (1 << 20)


def fetch_feature_set(
    spec: str, *, cache_dir: str | os.PathLike | None = None, token: Any = None, local_files_only: bool = False
) -> tuple[Path, dict]:
    """The directory in the Hub cache and the checked index of the feature set in the dataset
    repo ``hf-hub:owner/name[@rev]``, downloaded (or found in the cache: offline,
    ``HF_HUB_OFFLINE=1`` or ``local_files_only``)."""
    repo_id, revision = parse_hf_hub(spec)
    get = dict(repo_type="dataset", cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    index_path = hub.download(repo_id, INDEX_FILE, revision=revision, max_size=MAX_INDEX_BYTES, **get)
    index = checked_index(read_json(index_path, MAX_INDEX_BYTES), index_path)
    commit = index_path.parent.name  # snapshots/<commit>/.index.json: every shard from that commit
    fmt = index.get("file_format", "safetensors")
    for i, record in enumerate(index["shards"]):
        hub.download(
            repo_id,
            shard_name(i, fmt),  # the record names this file (checked_index), nothing else
            revision=commit,
            expected_sha256=record["sha256"],
            max_size=_shard_bound(record["rows"], index["num_features"], index["store_dtype"]),
            **get,
        )
    return index_path.parent, index


def dataset_card(index: dict, repo_id: str) -> str:
    """The README.md of the set's dataset repo: YAML front matter (tags; for parquet shards a
    ``configs`` entry so that ``datasets.load_dataset(repo_id)`` reads them) and a table of the
    model, the weights' digest, the preprocessing, the counts, and how to load it."""
    ix = index
    fmt = ix.get("file_format", "safetensors")
    front = ["---", "tags:", "- resnet_zoo", "- image-features", "- embeddings"]
    if fmt == "parquet":
        front += [
            "configs:",
            "- config_name: default",
            "  data_files:",
            "  - split: train",
            '    path: "shard-*.parquet"',
        ]
    front += ["---", ""]
    p = ix.get("preprocessing") or {}
    lines = [
        f"# Image features: {ix.get('model')} ({ix.get('weights')})",
        "",
        "Pooled features written by `resnet-zoo features`: one row per image, its path and "
        f"{ix.get('num_features')} values. Every shard's sha256 is recorded in `{INDEX_FILE}`.",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{ix.get('model')}` |",
        f"| weights | `{ix.get('weights')}` |",
        f"| weights sha256 | `{ix.get('weights_sha256')}` |",
        f"| preprocessing | {p.get('input_size')}px, crop_pct {p.get('crop_pct')}, {p.get('interpolation')}, "
        f"mean {p.get('mean')}, std {p.get('std')} |",
        f"| images | {sum(s['rows'] for s in ix['shards']):,} ({ix.get('num_bad', 0)} unreadable, skipped) |",
        f"| features per image | {ix.get('num_features')} ({ix.get('store_dtype')}) |",
        f"| shards | {len(ix['shards'])} {fmt} files |",
        f"| computed with | {ix.get('backend')}, {ix.get('compute_dtype')}, on {ix.get('device')} |",
        "",
        "## Load",
        "",
        "```python",
        "from resnet_zoo.features import read_feature_set",
        "",
        f'features = read_feature_set("hf-hub:{repo_id}")  # downloaded once, checked against the index',
        "feats, paths = features.load()  # torch [N, C], and the image of each row",
        "```",
    ]
    if fmt == "parquet":
        lines += ["", "or, with Hugging Face datasets:", "", "```python", "import datasets", "",
                  f'rows = datasets.load_dataset("{repo_id}", split="train")  # path, features', "```"]  # fmt: skip
    return "\n".join(front + lines) + "\n"


def push_feature_set(
    index: dict, index_path: Path, shards: list[Path], repo_id: str, *, private: bool | None = None,
    token: Any = None, revision: str | None = None, commit_message: str | None = None,
) -> str:  # fmt: skip
    """Upload a complete set (its ``index``, the file it was read from, and its ``shards`` in
    order, each already checked against the index) as the dataset repo ``repo_id``, with its
    card, in one commit; shards of an earlier push that this set does not have are deleted in
    the same commit. Returns the commit hash."""
    check_repo_id(repo_id)
    fmt = index.get("file_format", "safetensors")
    files: dict[str, Path | bytes] = {shard_name(i, fmt): path for i, path in enumerate(shards)}
    files[INDEX_FILE] = index_path
    files["README.md"] = dataset_card(index, repo_id).encode("utf-8")
    return hub.upload_files(
        repo_id,
        files,
        repo_type="dataset",
        stale=lambda p: p.startswith("shard-") or p == "index.json",
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message or f"Features of {index.get('num_images')} images by {index.get('model')}",
    )
