"""Pooled features of image files, on disk.

Two forms:

- one ``.safetensors`` file for small jobs (:func:`write_features`, :func:`read_features`):
  ``features`` ``[N, C]``, the image paths in its metadata;
- a feature set, a directory of numbered shards and a ``.index.json``, for any number of images
  (:func:`write_feature_set`, :func:`read_feature_set`): resumable, written by one process, by
  torchrun ranks, or by a Ray cluster (``engine="ray"`` in :mod:`.ray_engine`); shards are
  safetensors or parquet, and :class:`FeatureSet` reads them as torch, numpy, pyarrow or pandas.

Modules: :mod:`.format` the bytes on disk (names, schemas, path encoding, one shard, the index),
:mod:`.file` the single file, :mod:`.read` reading a set, :mod:`.sources` listing the inputs,
:mod:`.write` the writing steps and the local engine, :mod:`.ray_engine` the Ray engine,
:mod:`.ray_data` the Ray Data pieces for a user's own pipeline.
"""

from .file import FeaturesFile, read_features, write_features
from .read import FeatureSet, read_feature_set
from .write import FeatureSetResult, write_feature_set

__all__ = [
    "FeaturesFile",
    "FeatureSet",
    "FeatureSetResult",
    "write_features",
    "read_features",
    "write_feature_set",
    "read_feature_set",
]
