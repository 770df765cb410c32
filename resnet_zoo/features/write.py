"""Writing a feature set: the pooled features of a list of images, as numbered shards.

The steps, shared by the local engine (here: a DataLoader in this process, or one per rank
under torchrun) and the Ray engine (:mod:`resnet_zoo.features.ray_engine`):

1. :func:`plan_feature_set` lists the inputs, fixes the run's identity (inputs, model, weights
   and everything else that decides the numbers), refuses to resume another run, and finds the
   shards still to write;
2. an engine computes :class:`Batch` es of features, cut at the same places by
   :meth:`FeatureSetPlan.batches` whichever engine runs them;
3. :func:`collect_shards` writes each shard (atomically, recorded with its sha256) once all its
   batches have arrived, in any order;
4. :func:`finish_feature_set` writes ``.index.json`` when every shard is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError, ResNetZooError
from ..inference.device_decode import check_decode
from ..inference.images import Preprocess
from ..inference.model_view import Model, compute_of, unwrap
from ..inference.predict import PooledFeatures, image_batches, on_device
from ..util.atomic import WriterLock, remove_partials, write_text_atomic
from ..util.checks import check_positive_int
from ..util.dist import setup_distributed
from ..util.progress import advance
from .format import (
    FILE_FORMATS,
    INDEX_FILE,
    LOCK_FILE,
    MAX_RECORD_BYTES,
    PARQUET_DTYPES,
    RUN_FILE,
    SET_FORMAT,
    STORE_DTYPES,
    migrate_layout,
    optional_module,
    read_json,
    run_sha256,
    shard_done,
    write_index,
    write_shard,
)
from .sources import list_images, read_bytes, readable

__all__ = [
    "write_feature_set",
    "plan_feature_set",
    "collect_shards",
    "finish_feature_set",
    "FeatureSetPlan",
    "FeatureSetResult",
    "Batch",
    "run_identity",
    "inputs_sha256",
    "run_sha256",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """Features of consecutive images ``first ..`` of shard ``shard``: ``indices`` (into the
    plan's paths) of the images read, their ``features`` (or None when none could be read), and
    ``(index, error)`` of those that could not."""

    shard: int
    first: int
    indices: list[int]
    features: torch.Tensor | None
    errors: list[tuple[int, str]]


@dataclass(frozen=True)
class FeatureSetPlan:
    """What a run writes: the image list, its identity (``.run.json``), and this process's shards
    still to write (``todo``) and already complete (``skipped``)."""

    out: Path
    run: dict
    paths: list[str]
    n_shards: int
    todo: list[int]
    skipped: int
    num_features: int
    rank: int = 0
    world: int = 1
    lock: WriterLock | None = None  # rank 0's hold on the set, until the plan's ``with`` ends

    def __enter__(self) -> FeatureSetPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lock is not None:
            self.lock.release()

    def batches(self, batch_size: int) -> list[tuple[int, list[int]]]:
        """``(shard, image indices)`` of every batch still to compute: ``batch_size`` images,
        cut at each shard's start, so that any engine computes the same batches."""
        size, n = self.run["shard_size"], len(self.paths)
        return [
            (i, list(range(start, min(start + batch_size, (i + 1) * size, n))))
            for i in self.todo
            for start in range(i * size, min((i + 1) * size, n), batch_size)
        ]


@dataclass(frozen=True)
class FeatureSetResult:
    """What :func:`write_feature_set` did."""

    directory: str
    images: int
    shards: int
    rank: int
    world_size: int
    written_shards: int
    skipped_shards: int
    images_this_run: int
    seconds: float
    images_per_s: float | None
    engine: str = "local"
    # From the start of the computing to the first batch's features: the engine's start-up
    # (workers started, the model loaded in them), apart from its per-image cost.
    seconds_to_first_batch: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_options(out: str | os.PathLike, shard_size: int, batch_size: int, store_dtype: str, file_format: str) -> Path:
    """``out`` as a Path, once every option is valid (:class:`ConfigError` naming the bad one)."""
    check_positive_int("shard_size", shard_size)
    check_positive_int("batch_size", batch_size)
    if store_dtype not in STORE_DTYPES:
        raise ConfigError(f"store_dtype must be one of {list(STORE_DTYPES)}, got {store_dtype!r}")
    if file_format not in FILE_FORMATS:
        raise ConfigError(f"file_format must be one of {list(FILE_FORMATS)}, got {file_format!r}")
    if file_format == "parquet":
        if store_dtype not in PARQUET_DTYPES:
            raise ConfigError(
                f"parquet stores {' or '.join(PARQUET_DTYPES)}, not {store_dtype}: "
                "use --store-dtype float16, or --format safetensors for bfloat16"
            )
        optional_module("pyarrow.parquet", "parquet shards")  # refused now, not after the first shard
    out = Path(out)
    if out.suffix == ".safetensors":
        raise ConfigError(f"{out} names a file: a feature set is a directory (or use write_features)")
    return out


def plan_feature_set(
    model: Model,
    inputs: Iterable[str | os.PathLike],
    out: Path,
    *,
    shard_size: int,
    store_dtype: str,
    file_format: str,
    overwrite: bool,
    model_name: str | None,
    rank: int = 0,
    world: int = 1,
    device: str | None = None,
    decoder: str | None = None,
) -> FeatureSetPlan:
    """List the inputs, fix the run's identity, take the set's writer lock (rank 0), check the
    identity against what ``out`` holds (refused unless ``overwrite``), write ``.run.json`` and
    find the shards still to write. ``device``: the device type the features are computed on,
    where that is not ``model``'s (the Ray engine's GPU workers).

    Use the plan as a context manager: the lock is held until it exits. A second writer of
    another run fails at once naming the holder; one of the same run waits, then resumes."""
    paths = list_images(inputs)
    info = model.pretrained_info
    run = {
        "format": SET_FORMAT,
        "model": model_name or model.arch_name or "custom",
        "weights": (info.name or info.source) if info is not None else "random init",
        "store_dtype": store_dtype,
        "file_format": file_format,
        "shard_size": shard_size,
        "num_images": len(paths),
        "inputs_sha256": inputs_sha256(paths),
        **run_identity(model),
    }
    if device is not None:
        run["device"] = device
    if decoder is not None:  # recorded only where it is not Pillow: earlier sets keep their digest
        run["decoder"] = decoder
    run_id = run_sha256(run)
    out.mkdir(parents=True, exist_ok=True)
    lock = None
    if rank == 0:
        lock = _lock_set(out, run_id)
        try:
            migrate_layout(out)  # a set of the first layout resumes under today's names
            _check_run(out, run, overwrite)
            remove_partials(out)  # of a killed run: nobody else writes here now
            write_text_atomic(out / RUN_FILE, json.dumps(run, indent=1) + "\n")
        except BaseException:
            lock.release()
            raise
    if world > 1:
        torch.distributed.barrier()  # .run.json is this run's before any rank looks at a shard
        if rank != 0:
            _check_run(out, run, overwrite=False)
    n_shards = -(-len(paths) // shard_size)
    mine = [i for i in range(n_shards) if i % world == rank]
    todo = [i for i in mine if shard_done(out, i, file_format, run_id) is None]
    return FeatureSetPlan(
        out, run, paths, n_shards, todo, len(mine) - len(todo), model.config.num_features, rank, world, lock
    )


def inputs_sha256(paths: list[str]) -> str:
    """The digest of an image list, over an unambiguous encoding (a JSON list): no two lists
    share it, whatever characters their paths hold (a newline joining them would not do)."""
    return hashlib.sha256(json.dumps(paths, ensure_ascii=False).encode("utf-8")).hexdigest()


def _lock_set(out: Path, run_id: str) -> WriterLock:
    """The writer lock of the set in ``out``: taken at once, or after the holder ends where it
    writes the same run; :class:`ConfigError` naming the holder where it writes another."""
    lock = WriterLock(out / LOCK_FILE, tag=run_id)
    if lock.try_acquire():
        return lock
    holder: dict = {}
    for _ in range(50):  # the holder writes who it is right after it takes the lock
        if (holder := lock.holder()).get("tag"):
            break
        time.sleep(0.02)
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    if holder.get("tag") != run_id:
        raise ConfigError(
            f"{out} is being written by {who} (another model, input list or settings): "
            "wait for it to end, or use another --out"
        )
    log.info(
        "%s is being written by %s with the same inputs, model and settings: waiting for it, then resuming", out, who
    )
    lock.try_acquire(wait=True)
    return lock


def local_batches(
    plan: FeatureSetPlan, model: Model, batch_size: int, num_workers: int, decode: str = "cpu"
) -> Iterator[Batch]:
    """The local engine: a DataLoader over this process's batches (``num_workers`` decoding
    processes, or with ``decode="gpu"`` reading processes and the GPU decoding), features
    computed here in batch order."""
    batches = plan.batches(batch_size)
    if not batches:
        return
    features_model = PooledFeatures(model).eval()
    preprocess = Preprocess(model.pretrained_cfg.preprocessing, channels=model.config.img_channels)
    source = image_batches(
        plan.paths, preprocess, compute_of(model)[2], decode=decode, num_workers=num_workers,
        batch_sampler=[b for _, b in batches], wrap=readable, read=read_bytes,
    )  # fmt: skip
    with torch.inference_mode():
        for (shard, indices), (kept, pixels, errors) in zip(batches, source):
            feats = None if pixels is None else features_model(pixels).cpu()
            yield Batch(shard, indices[0], kept, feats, errors)


def collect_shards(
    plan: FeatureSetPlan, batches: Iterable[Batch], batch_size: int, *, skip_bad: bool, progress: bool
) -> tuple[int, float | None]:
    """Write each shard of ``plan.todo`` once all its batches (in any order) are in; the first
    unreadable image raises :class:`InputError` unless ``skip_bad``. Returns the images seen
    and the seconds until the first batch arrived."""
    started, first = time.perf_counter(), None
    expected: dict[int, int] = {}
    total = 0
    for shard, indices in plan.batches(batch_size):
        expected[shard] = expected.get(shard, 0) + 1
        total += len(indices)
    pending: dict[int, dict[int, Batch]] = {}
    written: set[int] = set()
    seen = 0
    rank = f" rank {plan.rank}" if plan.world > 1 else ""
    with tqdm(total=total, desc=f"features{rank}", unit="img", disable=not progress) as bar:
        for batch in batches:
            if first is None:
                first = time.perf_counter() - started
            if batch.errors and not skip_bad:
                raise InputError(
                    f"{batch.errors[0][1]} (shards already complete stay valid; fix or remove "
                    "the file, or pass --skip-bad, and re-run to resume)"
                )
            if batch.shard in written or batch.first in pending.get(batch.shard, {}):
                continue  # a retried task delivered twice (even after its shard was written): keep one
            got = pending.setdefault(batch.shard, {})
            got[batch.first] = batch
            n = len(batch.indices) + len(batch.errors)
            seen += n
            advance(bar, n)
            if len(got) == expected[batch.shard]:
                _write_shard(plan, batch.shard, [got[k] for k in sorted(got)])
                del pending[batch.shard]
                written.add(batch.shard)
    if pending or seen != total:
        raise ResNetZooError(
            f"the engine delivered {seen:,} of {total:,} images "
            f"(shards {sorted(pending)} incomplete); re-run the command to resume"
        )
    return seen, first


def finish_feature_set(plan: FeatureSetPlan) -> None:
    """Wait for every rank, then rank 0 writes ``.index.json``."""
    if plan.world > 1:
        torch.distributed.barrier()
    if plan.rank == 0:
        write_index(plan.out, plan.run, plan.n_shards)
    if plan.world > 1:
        torch.distributed.barrier()


def write_feature_set(
    model: Model,
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
    device: Any = None,
    decode: str = "cpu",
) -> FeatureSetResult:
    """Pooled features of every image in ``inputs`` into the directory ``out``, in shards of
    ``shard_size`` images; memory is bounded by one shard.

    ``inputs``: image files, directories (searched recursively), lists of images (``.txt``, one
    per line; ``.csv`` or ``.parquet`` with a ``path`` column), local or URIs that pyarrow's
    file systems read. The sorted image list is cut into shards; shard ``i`` is written by
    process ``i % world`` (one process, or each rank under torchrun), to a temporary name then
    renamed, and recorded with its sha256. Re-running the same command skips every shard
    already complete and verified, so a run killed at any moment ends, once re-run, with the
    same bytes as an uninterrupted one. Rank 0 writes ``.index.json`` when all are done.

    ``device``: where the model computes (default: where it is; ``"auto"`` under torchrun is
    this rank's GPU). The index records the device type and compute dtype: a resume that
    changes them is refused. ``decode="gpu"``: JPEGs decoded in batches on the model's GPU
    (recorded as the run's decoder: its pixels are not Pillow's).
    """
    out = check_options(out, shard_size, batch_size, store_dtype, file_format)
    model = on_device(model, device)
    check_decode(decode, compute_of(model)[2])
    dist = setup_distributed()
    with plan_feature_set(
        model,
        inputs,
        out,
        shard_size=shard_size,
        store_dtype=store_dtype,
        file_format=file_format,
        overwrite=overwrite,
        model_name=model_name,
        rank=dist.rank,
        world=dist.world,
        decoder="torchvision.io.decode_jpeg" if decode == "gpu" else None,
    ) as plan:
        started = time.perf_counter()
        images, first = collect_shards(
            plan, local_batches(plan, model, batch_size, num_workers, decode), batch_size, skip_bad=skip_bad,
            progress=progress,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        finish_feature_set(plan)
    return plan_result(plan, images, elapsed, first=first)


def plan_result(
    plan: FeatureSetPlan, images: int, elapsed: float, engine: str = "local", first: float | None = None
) -> FeatureSetResult:
    return FeatureSetResult(
        str(plan.out),
        len(plan.paths),
        plan.n_shards,
        plan.rank,
        plan.world,
        len(plan.todo),
        plan.skipped,
        images,
        round(elapsed, 3),
        round(images / elapsed, 2) if elapsed > 0 and images else None,
        engine,
        None if first is None else round(first, 3),
    )


def _weights_sha256(inner: nn.Module) -> str:
    """sha256 over the tensors that compute the features (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in inner.state_dict().items():
        t = t.detach()
        t = (t.to_dense() if t.is_mkldnn else t).cpu().contiguous()  # oneDNN's fast path holds opaque tensors
        h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def run_identity(model: Model) -> dict:
    """What decides the numbers besides the inputs: the weights' sha256, the compute dtype, the
    backend, the device type and the preprocessing. A resume must match all of them."""
    backend, dtype, device = compute_of(model)
    return {
        "weights_sha256": _weights_sha256(unwrap(model)),
        "compute_dtype": str(dtype).replace("torch.", ""),
        "backend": backend,
        "device": device.type,
        "preprocessing": model.pretrained_cfg.preprocessing.to_dict(),
    }


def _check_run(directory: Path, run: dict, overwrite: bool) -> None:
    """Refuse to resume a directory written for other inputs, model or settings."""
    path = directory / RUN_FILE
    if not os.path.lexists(path):
        return
    try:
        old = read_json(path, MAX_RECORD_BYTES)
    except (OSError, ValueError, RecursionError):  # not a .run.json this project wrote: another run's
        old = {}
    if old == run:
        return
    if not overwrite:
        changed = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))

        def says(k: str) -> str:
            if k.endswith("sha256") or isinstance(run.get(k), dict):
                return k
            return f"{k} ({old.get(k, 'not recorded')} -> {run.get(k)})"

        what = (
            "the input list (files added or removed)"
            if changed == ["inputs_sha256"] or "inputs_sha256" in changed and "num_images" in changed
            else ", ".join(map(says, changed))
        )
        raise ConfigError(
            f"{directory} holds features of another run: {what} changed. Use another "
            "--out, or --overwrite to start over"
        )
    for p in [*directory.glob("shard-*"), *directory.glob(".shard-*"), directory / INDEX_FILE, path]:
        p.unlink(missing_ok=True)


def _write_shard(plan: FeatureSetPlan, i: int, batches: list[Batch]) -> None:
    """Shard ``i`` from its batches in order: the features in the stored dtype, the paths of
    the images read, the unreadable ones with their errors."""
    dtype = STORE_DTYPES[plan.run["store_dtype"]]
    rows = [b.features.float().to(dtype) for b in batches if b.features is not None]
    kept = [plan.paths[k] for b in batches for k in b.indices]
    bad = [{"path": plan.paths[k], "error": message} for b in batches for k, message in b.errors]
    feats = torch.cat(rows) if rows else torch.empty(0, plan.num_features, dtype=dtype)
    write_shard(plan.out, i, plan.run, feats, kept, bad)
