"""Pooled features of image files written to, and read from, a ``.safetensors`` file.

The file holds one tensor, ``features`` ``[N, C]``; its metadata holds the image paths in row
order (``paths``, a JSON list), the model and the weights. It is written to a temporary name
and renamed, so a reader never sees a partial file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from .atomic import atomic_write, write_text_atomic
from .config import check_positive_int
from .errors import CheckpointError, ConfigError, ResNetZooError
from .integrity import is_sha256, not_a_regular_file, printable, sha256_file

__all__ = ["FeaturesFile", "FeatureSet", "write_features", "read_features", "write_feature_set",
           "read_feature_set"]


@dataclass(frozen=True)
class FeaturesFile:
    """What :func:`write_features` wrote, or :func:`read_features` read."""

    path: Path
    features: torch.Tensor  # [N, C]
    paths: list[str]  # the image of each row
    model: str
    weights: str


def write_features(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_bad: bool = False,
    progress: bool = True,
    model_name: str | None = None,
) -> FeaturesFile:
    """Extract pooled features of every image in ``inputs`` (files and directories) with
    :func:`~resnet_zoo.extract_features` and write them to ``out`` (``.safetensors``)."""
    from safetensors.torch import save_file

    from .inference import extract_features

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"the features file must be a .safetensors file, got {str(out)!r}")
    feats, paths = extract_features(model, inputs, batch_size=batch_size, num_workers=num_workers,
                                    skip_bad=skip_bad, progress=progress)
    info = model.pretrained_info
    name = model_name or model.arch_name or "custom"
    weights = (info.name or info.source) if info is not None else "random init"
    metadata = {"paths": json.dumps([str(p) for p in paths]), "model": name, "weights": weights,
                "shape": json.dumps(list(feats.shape))}
    with atomic_write(out) as tmp:
        save_file({"features": feats.contiguous()}, str(tmp), metadata=metadata)
    return FeaturesFile(out, feats, [str(p) for p in paths], name, weights)


def read_features(path: str | os.PathLike) -> FeaturesFile:
    """The features, image paths, model and weights of a file :func:`write_features` wrote."""
    from .pretrained.files import load_safetensors

    tensors, metadata = load_safetensors(path)
    try:
        feats = tensors["features"]
        paths = json.loads(metadata["paths"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a resnet_zoo features file (no {e})") from None
    if not isinstance(paths, list) or len(paths) != feats.shape[0]:
        raise CheckpointError(f"{path}: {feats.shape[0]} feature rows but the metadata lists "
                              f"{len(paths) if isinstance(paths, list) else 'no'} paths")
    return FeaturesFile(Path(path), feats, [str(p) for p in paths], metadata.get("model", ""),
                        metadata.get("weights", ""))


# --- Feature sets: a directory of shards, resumable, shared between processes -----------------

SET_FORMAT = "resnet_zoo.features/1"
RUN_FILE = "run.json"
INDEX_FILE = "index.json"
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# Shard file formats: safetensors (the default; features and a paths tensor) or parquet (one
# row per image: path, features as a fixed-size list; the model and weights in its metadata).
FILE_FORMATS = ("safetensors", "parquet")
PARQUET_DTYPES = ("float32", "float16")  # parquet has no bfloat16


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
    from .pretrained.files import load_safetensors

    tensors, _ = load_safetensors(path)
    encoded = tensors.get("paths")
    return tensors.get("features"), (_decode_paths(encoded, path) if encoded is not None else None)


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
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ResNetZooError(f"{what} needs {package}: pip install {package} "
                             "(or pip install 'resnet_zoo[arrow]')") from None


def _encode_paths(paths: list[str]) -> torch.Tensor:
    data = json.dumps(paths).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def _decode_paths(t: torch.Tensor, where: Path) -> list[str]:
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
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise bad(f"counts {printable(repr(rows))[:40]} rows, not a count")
    if not is_sha256(record.get("sha256")):
        raise bad("has no sha256 of 64 hex digits")
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
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise CheckpointError(f"{where}: 'num_features' must be a positive integer, got "
                              f"{printable(repr(width))[:40]}")
    if shards and width is None:
        raise CheckpointError(f"{where}: 'num_features' is missing")
    if index.get("store_dtype") not in STORE_DTYPES:
        raise CheckpointError(f"{where}: 'store_dtype' must be one of {list(STORE_DTYPES)}")
    fmt = index.get("file_format", "safetensors")
    if fmt not in FILE_FORMATS:
        raise CheckpointError(f"{where}: 'file_format' must be one of {list(FILE_FORMATS)}")
    for i, record in enumerate(shards):
        _checked_record(record, i, where, fmt)
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


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo")
    return rank, world


def _weights_sha256(inner: nn.Module) -> str:
    """sha256 over the tensors that compute the features (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in inner.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def run_identity(model: nn.Module) -> dict:
    """What decides the numbers besides the inputs: the weights' sha256, the compute dtype, the
    backend, the device type and the preprocessing. A resume must match all of them."""
    from .transforms import preprocessing_for

    inner = model._wrapped() if hasattr(model, "_wrapped") else model  # under a fast-path wrapper
    first = next(iter(inner.parameters()), None)
    backend = getattr(model, "backend", "eager")
    dtype = getattr(model, "dtype", None) or (first.dtype if first is not None else torch.float32)
    on_torch = backend in ("eager", "torch") and first is not None  # a runtime computes on the CPU
    return {"weights_sha256": _weights_sha256(inner),
            "compute_dtype": str(dtype).replace("torch.", ""),
            "backend": backend,
            "device": first.device.type if on_torch else "cpu",
            "preprocessing": preprocessing_for(model).to_dict()}


def _check_run(directory: Path, run: dict, overwrite: bool) -> None:
    """Refuse to resume a directory written for other inputs, model or settings."""
    path = directory / RUN_FILE
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        old = {}
    if old == run:
        return
    if not overwrite:
        changed = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))

        def says(k: str) -> str:
            if k.endswith("sha256") or isinstance(run.get(k), dict):
                return k
            return f"{k} ({old.get(k, 'not recorded')} -> {run.get(k)})"

        what = ("the input list (files added or removed)" if changed == ["inputs_sha256"] or
                "inputs_sha256" in changed and "num_images" in changed else ", ".join(map(says, changed)))
        raise ConfigError(f"{directory} holds features of another run: {what} changed. Use another "
                          "--out, or --overwrite to start over")
    for p in list(directory.glob("shard-*")) + [directory / INDEX_FILE, path]:
        p.unlink(missing_ok=True)


def _done(directory: Path, i: int, fmt: str = "safetensors") -> dict | None:
    """The record of shard ``i`` if the shard is complete and matches it (a record that names
    another file, or is malformed, is not: the shard is written again)."""
    try:
        record = _checked_record(json.loads((directory / _record_name(i)).read_text()), i,
                                 directory / _record_name(i), fmt)
        shard = directory / _shard_name(i, fmt)
        if not_a_regular_file(shard) is None and sha256_file(shard) == record["sha256"]:
            return record
    except (OSError, ValueError, RecursionError):  # CheckpointError is a ValueError
        pass
    return None


def write_feature_set(
    model: nn.Module,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    shard_size: int = 4096,
    batch_size: int = 64,
    num_workers: int = 0,
    store_dtype: str = "float32",
    file_format: str = "safetensors",
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    model_name: str | None = None,
) -> dict:
    """Pooled features of every image in ``inputs`` into the directory ``out``, in shards of
    ``shard_size`` images; memory is bounded by one shard.

    The sorted image list is cut into shards; shard ``i`` is written by process ``i % world``
    (one process, or each rank under torchrun), to a temporary name then renamed, and recorded
    with its sha256. Re-running the same command skips every shard already complete and
    verified, so a run killed at any moment ends, once re-run, with the same bytes as an
    uninterrupted one. Rank 0 writes ``index.json`` when all are done. Returns a summary.
    """
    import time

    from torch.utils.data import DataLoader

    from .data import ImageFiles, collate_images, find_images
    from .errors import InputError
    from .inference import _FeaturesOf
    from .progress import advance
    from .transforms import Preprocess, preprocessing_for

    check_positive_int("shard_size", shard_size)
    check_positive_int("batch_size", batch_size)
    if store_dtype not in STORE_DTYPES:
        raise ConfigError(f"store_dtype must be one of {list(STORE_DTYPES)}, got {store_dtype!r}")
    if file_format not in FILE_FORMATS:
        raise ConfigError(f"file_format must be one of {list(FILE_FORMATS)}, got {file_format!r}")
    if file_format == "parquet":
        if store_dtype not in PARQUET_DTYPES:
            raise ConfigError(f"parquet stores {' or '.join(PARQUET_DTYPES)}, not {store_dtype}: "
                              "use --store-dtype float16, or --format safetensors for bfloat16")
        _optional("pyarrow.parquet", "parquet shards")  # refused now, not after the first shard
    out = Path(out)
    if out.suffix == ".safetensors":
        raise ConfigError(f"{out} names a file: a feature set is a directory (or use write_features)")
    rank, world = _dist()
    paths = sorted({str(p) for p in find_images(inputs)})
    info = model.pretrained_info
    run = {"format": SET_FORMAT, "model": model_name or model.arch_name or "custom",
           "weights": (info.name or info.source) if info is not None else "random init",
           "store_dtype": store_dtype, "file_format": file_format, "shard_size": shard_size,
           "num_images": len(paths),
           "inputs_sha256": hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest(),
           **run_identity(model)}
    out.mkdir(parents=True, exist_ok=True)
    _check_run(out, run, overwrite)
    if rank == 0:
        write_text_atomic(out / RUN_FILE, json.dumps(run, indent=1) + "\n")
    n_shards = -(-len(paths) // shard_size)
    mine = [i for i in range(n_shards) if i % world == rank]
    todo = [i for i in mine if _done(out, i, file_format) is None]
    features_model = _FeaturesOf(model)
    features_model.eval()
    transform = Preprocess(preprocessing_for(model), channels=model.config.img_channels)
    batches, owner = [], []
    for i in todo:
        for start in range(i * shard_size, min((i + 1) * shard_size, len(paths)), batch_size):
            batches.append(list(range(start, min(start + batch_size, (i + 1) * shard_size, len(paths)))))
            owner.append(i)
    started, images = time.perf_counter(), sum(len(b) for b in batches)
    from tqdm.auto import tqdm

    if batches:
        loader = DataLoader(ImageFiles([Path(p) for p in paths], transform), batch_sampler=batches,
                            num_workers=num_workers, collate_fn=collate_images)
        current, rows, kept, bad = None, [], [], []
        with tqdm(total=images, desc=f"features{f' rank {rank}' if world > 1 else ''}", unit="img",
                  disable=not progress) as bar, torch.inference_mode():
            for b, (indices, batch, errors) in enumerate(loader):
                if owner[b] != current:
                    current, rows, kept, bad = owner[b], [], [], []
                if errors and not skip_bad:
                    i, message = errors[0]
                    raise InputError(f"{message} (shards already complete stay valid; fix or remove "
                                     "the file, or pass --skip-bad, and re-run to resume)")
                bad += [{"path": paths[i], "error": message} for i, message in errors]
                if batch is not None:
                    rows.append(features_model(batch).float().to(STORE_DTYPES[store_dtype]))
                    kept += [paths[i] for i in indices]
                advance(bar, len(indices) + len(errors))
                if b + 1 == len(batches) or owner[b + 1] != current:
                    _write_shard(out, current, rows, kept, bad, model, run)
    elapsed = time.perf_counter() - started
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        _write_index(out, run, n_shards)
    if world > 1:
        torch.distributed.barrier()
    return {"directory": str(out), "images": len(paths), "shards": n_shards, "rank": rank,
            "world_size": world, "written_shards": len(todo), "skipped_shards": len(mine) - len(todo),
            "images_this_run": images, "seconds": round(elapsed, 3),
            "images_per_s": round(images / elapsed, 2) if elapsed > 0 and images else None}


def _write_shard(out: Path, i: int, rows: list[torch.Tensor], kept: list[str], bad: list[dict],
                 model: nn.Module, run: dict) -> None:
    width = model.config.num_features
    feats = torch.cat(rows) if rows else torch.empty(0, width, dtype=STORE_DTYPES[run["store_dtype"]])
    fmt = run["file_format"]
    name = _shard_name(i, fmt)
    with atomic_write(out / name) as tmp:
        if fmt == "parquet":
            table = _arrow_table(feats, kept, width, {"model": run["model"], "weights": run["weights"]},
                                 "parquet shards")
            _optional("pyarrow.parquet", "parquet shards").write_table(table, str(tmp))
        else:
            from safetensors.torch import save_file

            save_file({"features": feats.contiguous(), "paths": _encode_paths(kept)}, str(tmp))
    record = {"file": name, "rows": len(kept), "sha256": sha256_file(out / name), "bad": bad}
    write_text_atomic(out / _record_name(i), json.dumps(record, indent=1) + "\n")


def _write_index(out: Path, run: dict, n_shards: int) -> None:
    records = []
    for i in range(n_shards):
        record = _done(out, i, run["file_format"])
        if record is None:
            raise ResNetZooError(f"{out / _shard_name(i, run['file_format'])} is missing or damaged after every process "
                                 "finished; re-run the command to write it")
        records.append(record)
    num_features = None
    if records:
        feats, _ = _read_shard(out / _shard_name(0, run["file_format"]), run["file_format"])
        num_features = None if feats is None else feats.shape[1]
    index = {**run, "num_features": num_features, "shards": records,
             "num_bad": sum(len(r["bad"]) for r in records)}
    write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
