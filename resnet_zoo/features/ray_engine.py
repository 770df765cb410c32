"""The Ray engine of a feature set (``resnet-zoo features ... --engine ray``; ``pip install
'resnet_zoo[ray]'``): the same feature set as the local engine, computed by a Ray cluster.

The driver plans the run as the local engine does (:func:`~.write.plan_feature_set`: the same
image list, identity, shards and batches), then streams the batches still to compute through
Ray Data: CPU tasks decode and resize each batch (:class:`_Decode`), a pool of model actors
turns it into features (:class:`_Extract`, ``num_gpus`` on GPU nodes), and the driver writes
each shard as soon as all its batches are in (:func:`~.write.collect_shards`). Ray retries a
task whose worker dies and restarts a dead actor, so a killed worker costs a retry; a batch
delivered twice is kept once. A killed driver resumes like the local engine: the same command
skips every complete shard.

Every actor builds the model from the driver's :class:`~resnet_zoo.inference.recipe.ModelRecipe`, pinned
to the dtype and backend the driver resolved, and refuses to run if its weights, dtype, backend,
device or preprocessing differ from the run's identity: a feature set never mixes numbers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from typing import Any, Generator, Iterable

import numpy as np
import torch

from ..errors import ConfigError, InputError, ResNetZooError
from ..inference.images import ImageFiles, Preprocess, collate_images
from ..inference.predict import PooledFeatures
from ..inference.recipe import ModelRecipe
from ..manifest import Preprocessing
from ..util.checks import check_positive_int, is_number
from .sources import readable
from .write import (
    Batch,
    FeatureSetPlan,
    FeatureSetResult,
    check_options,
    collect_shards,
    finish_feature_set,
    plan_feature_set,
    plan_result,
    run_identity,
)

__all__ = ["write_feature_set_ray", "DECODE_CPUS"]

log = logging.getLogger(__name__)

DECODE_CPUS = 1.0  # Ray CPUs a decode task asks for


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("--engine ray needs Ray Data: pip install 'resnet_zoo[ray]'") from None
    return ray


def _decode(rows: dict[str, Any], preprocessing: dict, channels: int) -> dict[str, Any]:
    """A Ray Data task: one row per batch (``shard``, ``first``, ``paths`` as JSON) to the
    pixels of the images read (raw float32 bytes and their shape), the indices kept and the
    errors, exactly as the local engine's DataLoader reads them."""
    transform = readable(Preprocess(Preprocessing(**preprocessing), channels=channels))
    out: dict[str, list] = {"shard": [], "first": [], "kept": [], "errors": [], "pixels": [], "shape": []}
    for shard, first, paths in zip(rows["shard"], rows["first"], rows["paths"]):
        first = int(first)
        files = ImageFiles(json.loads(paths), transform)
        kept, pixels, errors = collate_images([files[k] for k in range(len(files))])
        out["shard"].append(int(shard))
        out["first"].append(first)
        out["kept"].append(json.dumps([first + k for k in kept]))
        out["errors"].append(json.dumps([[first + k, message] for k, message in errors]))
        out["pixels"].append(b"" if pixels is None else pixels.contiguous().numpy().tobytes())
        out["shape"].append(json.dumps([] if pixels is None else list(pixels.shape)))
    return {
        k: np.asarray(v, dtype=object) if k in ("pixels", "kept", "errors", "shape") else np.asarray(v)
        for k, v in out.items()
    }


class _Extract:
    """A Ray Data actor: builds the model once from ``recipe``, checks it against the run's
    ``identity``, and maps batches to their features (raw float32 bytes). With
    ``preprocessing`` it decodes the batch's files itself (CPU workers: no pixels cross the
    object store); without, it takes the pixels of :func:`_decode` tasks (GPU workers)."""

    def __init__(
        self, recipe: ModelRecipe, identity: dict, threads: int, channels: int, preprocessing: dict | None = None
    ) -> None:
        torch.set_num_threads(max(1, threads))
        model = recipe.build()
        mine = run_identity(model)
        changed = sorted(k for k in identity if mine.get(k) != identity[k])
        if changed:
            raise ConfigError(
                f"a Ray worker on {os.uname().nodename} builds {recipe.name} with other "
                f"{', '.join(changed)} than the driver ("
                + ", ".join(
                    f"{k}: {mine.get(k)} vs {identity[k]}"
                    for k in changed
                    if k != "weights_sha256" and k != "preprocessing"
                )
                + "): install the same resnet_zoo, torch and weights on every node"
            )
        self.model = PooledFeatures(model).eval()
        self.device = torch.device(recipe.device)
        self.decode: dict[str, Any] | None = (
            None if preprocessing is None else {"preprocessing": preprocessing, "channels": channels}
        )

    def __call__(self, rows: dict[str, Any]) -> dict[str, Any]:
        if self.decode is not None:
            rows = _decode(rows, **self.decode)
        features = []
        for pixels, shape in zip(rows["pixels"], rows["shape"]):
            shape = json.loads(shape)
            if not shape:
                features.append(b"")
                continue
            x = torch.frombuffer(bytearray(pixels), dtype=torch.float32).view(shape).to(self.device)
            with torch.inference_mode():
                features.append(self.model(x).float().cpu().contiguous().numpy().tobytes())
        return {
            "shard": rows["shard"],
            "first": rows["first"],
            "kept": rows["kept"],
            "errors": rows["errors"],
            "features": np.asarray(features, dtype=object),
        }


def _batches(rows: Iterable[dict[str, Any]], width: int) -> Generator[Batch, None, None]:
    for row in rows:
        kept = json.loads(row["kept"])
        feats = None
        if kept:
            feats = torch.frombuffer(bytearray(row["features"]), dtype=torch.float32).view(len(kept), width)
        yield Batch(
            int(row["shard"]), int(row["first"]), kept, feats, [(int(k), str(m)) for k, m in json.loads(row["errors"])]
        )


def _user_error(e: BaseException) -> BaseException | None:
    """The ResNetZooError a worker raised, from under Ray's wrappers."""
    seen = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ResNetZooError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    return None


#: How long the model actors may take to start before the run fails (Ray Data's
#: ``wait_for_min_actors_s``; it waits without end by default).
ACTOR_START_SECONDS = 600


def _fit_pool(ray: Any, num_workers: int | None, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """The number of model actors: ``num_workers``, or as many as the cluster holds (beside
    one decode task when the actors are on GPUs); :class:`ConfigError` if they cannot fit."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    decode = DECODE_CPUS if gpus_per_worker else 0.0
    # An actor runs on one node: the cluster's total can hold a pool that no node can.
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    biggest = max((n.get("CPU", 0.0) for n in nodes), default=cpus)
    biggest_gpus = max((n.get("GPU", 0.0) for n in nodes), default=gpus)
    if cpus_per_worker > biggest or gpus_per_worker > biggest_gpus:
        raise ConfigError(
            f"a model worker of {cpus_per_worker:g} CPUs and {gpus_per_worker:g} GPUs fits no node of the "
            f"Ray cluster (the largest has {biggest:g} CPUs and {biggest_gpus:g} GPUs): lower --cpus-per-worker"
            + (" or --gpus-per-worker" if gpus_per_worker else "")
        )
    if num_workers is None:
        by_cpu = int((cpus - decode) // cpus_per_worker)
        by_gpu = int(gpus // gpus_per_worker) if gpus_per_worker else 1 << 20
        num_workers = max(1, min(by_cpu, by_gpu))
    need_cpus, need_gpus = num_workers * cpus_per_worker + decode, num_workers * gpus_per_worker
    if need_cpus > cpus or need_gpus > gpus:
        raise ConfigError(
            f"{num_workers} model workers x {cpus_per_worker:g} CPUs"
            + (f" x {gpus_per_worker:g} GPUs and a decode task ({decode:g} CPU)" if decode else "")
            + f" need {need_cpus:g} CPUs"
            + (f" and {need_gpus:g} GPUs" if decode else "")
            + f"; the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs: lower --num-workers "
            "or --cpus-per-worker, or add nodes"
        )
    return num_workers


def check_head_reachable(address: str | None, timeout: float = 3.0) -> None:
    """:class:`InputError` "no Ray head at HOST:PORT" unless a TCP connection to ``address``
    opens within ``timeout`` seconds (``ray.init`` retries a closed port for minutes). None and
    "auto" are left to Ray."""
    import socket

    if address is None or address == "auto" or address.startswith("local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address!r} is not HOST:PORT (or 'auto'), e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise InputError(
            f"no Ray head at {target} ({e.strerror or type(e).__name__}): start one with "
            "'ray start --head', or give its HOST:PORT"
        ) from None


def _configure(ctx: Any) -> None:
    """Ray Data's settings for a run: one progress bar (collect_shards'), and model actors that
    must start within ACTOR_START_SECONDS (one that no node can start, its resources taken or
    a node gone, would otherwise be waited for without end)."""
    ctx.enable_progress_bars = False
    ctx.wait_for_min_actors_s = ACTOR_START_SECONDS


def _join_executors(deadline: float) -> None:
    """Wait for Ray Data's executor threads, which a closed iterator stops, to end: one still
    running after ray.shutdown() reaches for the stopped worker, and Ray ends the process."""
    import threading

    end = time.monotonic() + deadline
    for thread in threading.enumerate():
        if thread.name.startswith("StreamingExecutor-") and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, end - time.monotonic()))


def _shutdown(ray: Any) -> None:
    """Stop the instance this run started, without letting a late call from Ray Data's
    threads start a second one ("Ray is not initialized", then minutes of a new local
    instance): Ray's auto-connect is off while it stops."""
    import sys

    hook: Any = sys.modules.get("ray._private.auto_init_hook")  # Ray's own switch (RAY_ENABLE_AUTO_CONNECT)
    previous = getattr(hook, "enable_auto_connect", None)
    if previous is not None:
        hook.enable_auto_connect = False
    try:
        ray.shutdown()
    finally:
        if previous is not None:
            hook.enable_auto_connect = previous


def _worker_recipe(
    recipe: ModelRecipe, num_workers: int | None, cpus_per_worker: float, gpus_per_worker: float
) -> ModelRecipe:
    """``recipe`` as the model actors build it (the eager model on CUDA on GPU workers), once
    the pool's settings are valid."""
    if num_workers is not None:
        check_positive_int("num_workers", num_workers)
    if not is_number(cpus_per_worker) or cpus_per_worker <= 0:  # 0 asked Ray for 2**20 actors
        raise ConfigError(f"cpus_per_worker must be a number > 0 (each actor's CPU share), got {cpus_per_worker!r}")
    if not is_number(gpus_per_worker, 0):
        raise ConfigError(f"gpus_per_worker must be a number >= 0, got {gpus_per_worker!r}")
    if recipe.pretrained is False or recipe.pretrained is None:
        raise ConfigError(
            "random init differs in every Ray worker, so their features would not be one "
            "model's: pass weights (--pretrained TAG, DIR or FILE; save_pretrained writes a DIR)"
        )
    # A worker computes where its share says: the eager model on a GPU with gpus_per_worker (the
    # driver's CPU copy then has the same identity), else its CPUs.
    return replace(recipe, device="cuda", fast=False) if gpus_per_worker > 0 else replace(recipe, device="cpu")


def write_feature_set_ray(
    recipe: ModelRecipe,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    shard_size: int = 4096,
    batch_size: int = 64,
    store_dtype: str = "float32",
    file_format: str = "safetensors",
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    address: str | None = None,
    num_workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    threads_per_worker: int | None = None,
) -> FeatureSetResult:
    """:func:`~resnet_zoo.features.write_feature_set` on a Ray cluster: the same directory,
    index and features, from ``recipe``'s model.

    ``address``: the cluster to join (``"auto"``, or ``HOST:PORT`` of a head started with
    ``ray start --head``); None starts a local instance, or uses the one this process already
    joined. ``num_workers`` model actors (default: as many as fit beside one decode task), each
    with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (> 0 runs the eager model on
    CUDA) and ``threads_per_worker`` torch threads (default: its CPUs, at least one).
    """
    out = check_options(out, shard_size, batch_size, store_dtype, file_format)
    recipe = _worker_recipe(recipe, num_workers, cpus_per_worker, gpus_per_worker)
    check_head_reachable(address)  # before anything is written: Ray itself retries without end
    ray = _ray()
    model = replace(recipe, device="cpu").build()  # the driver's copy: the run's identity
    pinned = recipe.pinned(model)
    with plan_feature_set(
        model,
        inputs,
        out,
        shard_size=shard_size,
        store_dtype=store_dtype,
        file_format=file_format,
        overwrite=overwrite,
        model_name=recipe.name,
        device=torch.device(recipe.device).type,
    ) as plan:
        started, images, first = time.perf_counter(), 0, None
        if plan.todo:
            started_ray = not ray.is_initialized()
            if started_ray:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                images, first = _compute(
                    ray,
                    plan,
                    pinned,
                    model.config.img_channels,
                    batch_size,
                    skip_bad=skip_bad,
                    progress=progress,
                    num_workers=num_workers,
                    cpus_per_worker=cpus_per_worker,
                    gpus_per_worker=gpus_per_worker,
                    threads=threads_per_worker,
                )
            finally:
                if started_ray:
                    _shutdown(ray)
        elapsed = time.perf_counter() - started
        finish_feature_set(plan)
    return plan_result(plan, images, elapsed, engine="ray", first=first)


def _compute(
    ray: Any,
    plan: FeatureSetPlan,
    recipe: ModelRecipe,
    channels: int,
    batch_size: int,
    *,
    skip_bad: bool,
    progress: bool,
    num_workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    threads: int | None,
) -> tuple[int, float | None]:
    """Stream the plan's batches through decode tasks and the actor pool; write shards as they
    complete. Returns the images computed and the seconds to the first batch."""
    pool = _fit_pool(ray, num_workers, cpus_per_worker, gpus_per_worker)
    _configure(ray.data.DataContext.get_current())
    items = [
        {"shard": s, "first": b[0], "paths": json.dumps([plan.paths[k] for k in b])}
        for s, b in plan.batches(batch_size)
    ]
    run = plan.run
    identity = {k: run[k] for k in ("weights_sha256", "compute_dtype", "backend", "device", "preprocessing")}
    actor = {"recipe": recipe, "identity": identity, "threads": threads or round(cpus_per_worker), "channels": channels}
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    if gpus_per_worker:  # decode on CPU tasks, the model on GPU actors
        ds = ds.map_batches(
            _decode,
            batch_size=1,
            num_cpus=DECODE_CPUS,
            fn_kwargs={"preprocessing": run["preprocessing"], "channels": channels},
        )
    else:  # each CPU actor decodes its own batches: no pixels in the object store
        actor["preprocessing"] = run["preprocessing"]
    ds = ds.map_batches(
        _Extract,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
        fn_constructor_kwargs=actor,
    )
    log.info(
        "Ray engine: %d batches, %d model workers x %g CPUs / %g GPUs",
        len(items),
        pool,
        cpus_per_worker,
        gpus_per_worker,
    )
    batches = _batches(ds.iter_rows(), plan.num_features)
    try:
        return collect_shards(plan, batches, batch_size, skip_bad=skip_bad, progress=progress)
    except Exception as e:
        user = _user_error(e)
        if user is not None and user is not e:
            raise type(user)(str(user)) from None
        raise
    finally:  # stop the streaming executor now: its threads must not outlive ray.shutdown()
        batches.close()
        _join_executors(deadline=30.0)
