"""The training loop: one process or many (torchrun + DDP), resumable.

Determinism: the data order comes from a DistributedSampler seeded by ``seed`` and the epoch,
the augmentation from a generator seeded by ``(seed, epoch, rank)``, and the learning rate is
a function of the step; a checkpoint therefore needs only weights, optimizer state and the
epoch, and a resumed run ends with the same weights as an uninterrupted one (CPU, same
threads).
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from .. import cpu
from ..cpu import cpu_capabilities
from ..device import deterministic, half_dtype, make_current, resolve_device
from ..errors import ConfigError, ResNetZooError
from ..factory import create
from ..manifest import Preprocessing, PretrainedInfo
from ..model import ResNetBase
from ..registry import get_entry
from ..util.atomic import atomic_write
from ..util.dist import Dist, all_reduce_sum, barrier, setup_distributed, shutdown
from ..util.plot import line_chart
from .checkpoint import STATE_FILE, check_resumable, load_checkpoint, save_checkpoint, write_json
from .config import TrainConfig
from .inputs import Normalize, augment, batches, channel_stats, load_data, resident

__all__ = ["train", "train_one_epoch", "evaluate", "lr_at", "command_line"]

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


def lr_at(step: int, total: int, cfg: TrainConfig, epochs: int | None = None) -> float:
    """The learning rate at ``step`` of ``total`` (``epochs`` long, default ``cfg.epochs``):
    warm-up, then the step or cosine schedule."""
    warmup = round(cfg.warmup_epochs * total / (epochs or cfg.epochs))
    if step < warmup:  # linear from lr/10 to lr
        return cfg.lr * (0.1 + 0.9 * step / warmup)
    if cfg.schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    drops = sum(1 for m in cfg.milestones if step >= math.floor(m * total))
    return cfg.lr * cfg.gamma**drops


def evaluate(
    model: nn.Module, data: Any, normalize: Normalize, device: torch.device, workers: int = 0, batch_size: int = 256
) -> tuple[float, float]:
    """Held-out loss and accuracy, in float32 (no autocast: the figure a user will reproduce)."""
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for x, y in batches(data, list(range(len(data))), batch_size, workers):
            y = y.to(device)
            logits = model(normalize(x.to(device)))
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train(was)
    return loss_sum / len(data), correct / len(data)


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (bfloat16, or float16 with a GradScaler), or None for plain float32.
    On a GPU "auto" is its 16-bit dtype (bfloat16 from compute capability 8.0); on the CPU
    bfloat16 where it is fast. A dtype the device cannot run is refused at once."""
    if cfg.precision == "float32":
        return None
    if device.type == "cuda":
        half = half_dtype(device)
        if cfg.precision == "bfloat16" and half != torch.bfloat16:
            raise ConfigError(
                f"{device} has no bfloat16 (compute capability below 8.0): use --precision float16 or auto"
            )
        return {"auto": half, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.precision]
    if cfg.precision == "float16":
        raise ConfigError("--precision float16 is for GPUs (with a GradScaler); on the CPU use bfloat16 or auto")
    if cfg.precision == "bfloat16":
        return cpu.resolve_dtype(torch.bfloat16)  # refused at once where bf16 is not fast
    return torch.bfloat16 if cpu.cpu_capabilities().fast_bf16 else None


@dataclass(frozen=True)
class EpochOrder:
    """This rank's share of an epoch's shuffled order, drawn by a generator seeded with
    ``(seed, epoch)`` on the device the images are on (a GPU for a resident set: the order is
    made there, nothing crosses the bus). As torch's DistributedSampler: the permutation is
    padded with its head to a multiple of ``world``, and rank r takes every world-th index
    from r, so every rank runs the same number of steps."""

    n: int
    world: int
    rank: int
    seed: int
    device: torch.device

    def __len__(self) -> int:
        return math.ceil(self.n / self.world)

    def indices(self, epoch: int) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_033 + epoch)
        perm = torch.randperm(self.n, generator=g, device=self.device)
        total = len(self) * self.world
        if total > self.n:
            perm = torch.cat([perm, perm[: total - self.n]])
        return perm[self.rank : total : self.world]


@dataclass
class _Run:
    """What the epochs share: the data, the model and its optimizer, the schedule."""

    cfg: TrainConfig
    dist: Dist
    train_set: Any
    val_set: Any
    interpolation: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: Normalize
    model: ResNetBase
    wrapped: nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    sampler: EpochOrder
    per_rank: int
    steps_per_epoch: int
    autocast: torch.dtype | None
    flip: bool
    scaler: Any = None  # a GradScaler under float16 autocast
    epochs: int = 0  # the run's length: cfg.epochs, or what fits --time-budget-min

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def _prepare(cfg: TrainConfig, dist: Dist) -> _Run:
    entry = get_entry(cfg.arch)
    input_size = cfg.input_size or entry.input_size
    img_channels = cfg.img_channels
    train_set, val_set, interpolation = load_data(cfg, input_size, img_channels)
    mean, std = channel_stats(train_set, cfg.invert)
    if cfg.batch_size % dist.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world} processes")
    per_rank = cfg.batch_size // dist.world

    torch.manual_seed(cfg.seed)
    model = create(
        cfg.arch, pretrained=cfg.pretrained or False, num_classes=len(train_set.classes), img_channels=img_channels
    )
    model.to(device=dist.device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    model.train()
    # In-memory sets (CIFAR, digits, decoded folders) live on the device as uint8: batches are
    # indexed and augmented there, nothing is copied per step.
    train_set, val_set = resident(train_set, dist.device), resident(val_set, dist.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )
    wrapped: nn.Module = model
    if dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    if cfg.compile:
        wrapped = cast(nn.Module, torch.compile(wrapped, dynamic=False))
    autocast = _autocast_dtype(cfg, dist.device)
    sampler = EpochOrder(len(train_set), dist.world, dist.rank, cfg.seed, train_set.device)
    return _Run(
        cfg=cfg,
        dist=dist,
        train_set=train_set,
        val_set=val_set,
        interpolation=interpolation,
        input_size=input_size,
        mean=mean,
        std=std,
        normalize=Normalize(mean, std, dist.device),
        model=model,
        wrapped=wrapped,
        optimizer=optimizer,
        sampler=sampler,
        per_rank=per_rank,
        steps_per_epoch=math.ceil(len(sampler) / per_rank),
        autocast=autocast,
        flip=cfg.flip if cfg.flip is not None else cfg.dataset != "digits",
        scaler=torch.amp.GradScaler(dist.device.type) if autocast == torch.float16 else None,
        epochs=cfg.epochs,
    )


def train_one_epoch(run: _Run, epoch: int) -> dict[str, float]:
    """One pass over this rank's share of the training set; returns the metrics of all ranks."""
    from tqdm.auto import tqdm

    cfg, dist = run.cfg, run.dist
    order = run.sampler.indices(epoch)
    g = torch.Generator(device=run.train_set.device).manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + dist.rank)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    correct = torch.zeros((), dtype=torch.long, device=dist.device)
    seen, lr = 0, cfg.lr
    start = time.perf_counter()
    bar = tqdm(
        batches(run.train_set, order, run.per_rank, cfg.workers),
        total=run.steps_per_epoch,
        desc=f"epoch {epoch + 1}/{run.epochs}",
        unit="batch",
        disable=not (cfg.progress and dist.main),
        leave=False,
    )
    for i, (x, y) in enumerate(bar):
        lr = lr_at(epoch * run.steps_per_epoch + i, run.total_steps, cfg, run.epochs)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        x = run.normalize(augment(x, cfg.pad, run.flip, g, cfg.invert).to(dist.device))
        y = y.to(dist.device)
        with torch.autocast(dist.device.type, dtype=run.autocast or torch.bfloat16, enabled=run.autocast is not None):
            logits = run.wrapped(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        if not bool(torch.isfinite(loss)):
            raise ResNetZooError(
                f"the training loss is {loss.item()} at epoch {epoch + 1}, step {i + 1} (lr {lr:.3g}): "
                "training diverged; lower --lr or check the data. Nothing of this epoch was saved"
            )
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:  # float16: scaled, so that small gradients do not vanish
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if i % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
    elapsed = time.perf_counter() - start
    total_loss, total_correct, total_seen = all_reduce_sum([loss_sum.item(), correct.item(), seen], dist)
    return {
        "lr": lr,
        "train_loss": total_loss / total_seen,
        "train_acc": total_correct / total_seen,
        "seconds": elapsed,
        "images_per_s": total_seen / elapsed,
    }


def fit_epochs(cfg: TrainConfig, epoch_seconds: float) -> int:
    """The epochs of ``epoch_seconds`` each (training and evaluation, as the first took) that
    fit ``cfg.time_budget_min``: at least 1, at most ``cfg.epochs``."""
    budget = 60.0 * (cfg.time_budget_min or 0.0)
    return max(1, min(cfg.epochs, int(budget // max(epoch_seconds, 1e-9))))


def _end_of_epoch(
    run: _Run, epoch: int, metrics: dict[str, float], history: list[dict], out: Path, started: float
) -> None:
    """Rank 0: evaluate, log, write the metrics, the curves and the checkpoint. With
    ``--time-budget-min``, the first epoch's time (evaluation included) fixes the run's length."""
    val_loss, val_acc = evaluate(run.model, run.val_set, run.normalize, run.dist.device, run.cfg.workers)
    if run.cfg.time_budget_min is not None and epoch == 0:
        run.epochs = fit_epochs(run.cfg, time.perf_counter() - started)
        log.info("--time-budget-min %g: %d epoch(s) fit", run.cfg.time_budget_min, run.epochs)
    record = {
        "epoch": epoch + 1,
        "lr": metrics["lr"],
        "train_loss": metrics["train_loss"],
        "train_acc": metrics["train_acc"],
        "val_loss": val_loss,
        "val_acc": val_acc,
        "seconds": metrics["seconds"],
        "images_per_s": metrics["images_per_s"],
        "planned_epochs": run.epochs,
    }
    history.append(record)
    log.info(
        "epoch %d: train loss %.4f acc %.4f | held-out loss %.4f acc %.4f | %.1f img/s",
        epoch + 1,
        record["train_loss"],
        record["train_acc"],
        val_loss,
        val_acc,
        record["images_per_s"],
    )
    write_json(out / "metrics.json", history)
    _plot(history, out / "curves.png", run.cfg)
    save_checkpoint(out / CHECKPOINT_DIR, run.model, run.optimizer, epoch + 1, history, run.cfg)


def _save_final(run: _Run, final: dict[str, Any], out: Path) -> None:
    """The final model as a save_pretrained directory, its card saying how it was made."""
    cfg = run.cfg
    start = run.model.pretrained_info  # the weights training started from (None: random init)
    run.model.pretrained_info = PretrainedInfo(
        source=f"trained by resnet_zoo on {cfg.dataset}",
        base_model=(start.base_model or start.origin) if start is not None else None,
        preprocessing=Preprocessing(run.input_size, 1.0, run.interpolation, mean=run.mean, std=run.std),
        labels=tuple(run.train_set.classes),
        description=f"{cfg.arch} trained on {cfg.dataset}",
        extra={
            "dataset": cfg.dataset,
            "epochs": cfg.epochs,
            "train_images": len(run.train_set),
            "heldout_images": len(run.val_set),
            "heldout_accuracy": final.get("val_acc"),
            "command": cfg.command or _python_command(cfg),
            "recipe": cfg.recipe(),
            "autocast": str(run.autocast).replace("torch.", "") if run.autocast else "none",
            "cpu": cpu_capabilities().describe(),
            **cfg.extra,
        },
    )
    run.model.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    run.model.eval().save_pretrained(out)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run ``cfg``; returns the final metrics. Writes to ``cfg.out``:
    ``metrics.json`` (one entry per epoch), ``curves.png``, ``checkpoint/`` (resumable), and
    the final model as a ``save_pretrained`` directory (``config.json``, ``model.safetensors``,
    ``README.md`` with the command and the held-out accuracy).
    """
    device = resolve_device(cfg.device, what="--device")  # this rank's: cuda:LOCAL_RANK under torchrun
    if cfg.deterministic:
        deterministic()
    make_current(device)
    dist = setup_distributed(device)
    out = Path(cfg.out)
    ckpt_dir = out / CHECKPOINT_DIR
    checked = None
    if cfg.resume and (ckpt_dir / STATE_FILE).is_file():  # the whole state, before any data are loaded
        checked = check_resumable(ckpt_dir, cfg, cfg.img_channels)
    run = _prepare(cfg, dist)
    start_epoch, history = 0, list[dict]()
    if checked is not None:
        start_epoch, history = load_checkpoint(ckpt_dir, run.model, run.optimizer, checked)
        planned = history[-1].get("planned_epochs") if history else None
        if isinstance(planned, int) and 0 < planned <= cfg.epochs:
            run.epochs = planned  # the length a --time-budget-min run fitted after its first epoch
        if dist.main:
            log.info("resuming %s after epoch %d", out, start_epoch)
    elif cfg.resume and dist.main:
        log.info("no checkpoint in %s: starting from scratch", ckpt_dir)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        log.info(
            "%s on %s: %d train / %d held-out images, %d classes, %d process(es), %d steps, %s",
            cfg.arch,
            cfg.dataset,
            len(run.train_set),
            len(run.val_set),
            len(run.train_set.classes),
            dist.world,
            run.total_steps,
            f"{run.autocast} autocast" if run.autocast else "float32",
        )
    epoch = start_epoch
    while epoch < run.epochs:
        started = time.perf_counter()
        metrics = train_one_epoch(run, epoch)
        if dist.main:
            _end_of_epoch(run, epoch, metrics, history, out, started)
        if epoch == 0 and cfg.time_budget_min is not None and dist.world > 1:  # rank 0 fitted it
            run.epochs = round(all_reduce_sum([float(run.epochs if dist.main else 0)], dist)[0])
        barrier(dist)
        epoch += 1
    final = history[-1] if history else {}
    if dist.main:
        _save_final(run, final, out)
    barrier(dist)
    shutdown(dist)
    return final


def _plot(history: list[dict], path: Path, cfg: TrainConfig) -> None:
    with atomic_write(path) as tmp:
        line_chart(
            {
                "train loss": [h["train_loss"] for h in history],
                "held-out loss": [h["val_loss"] for h in history],
                "train acc": [h["train_acc"] for h in history],
                "held-out acc": [h["val_acc"] for h in history],
            },
            tmp,
            title=f"{cfg.arch} on {cfg.dataset}",
        )


def _python_command(cfg: TrainConfig) -> str:
    args = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("command", "extra", "progress")}
    return "resnet_zoo.train.train(TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + "))"


def command_line() -> str:
    """The command that started this process, for the model card."""
    argv = list(sys.argv)
    if not argv:
        return ""
    program = "python -m resnet_zoo" if argv[0].endswith(("__main__.py", "cli.py")) else Path(argv[0]).name
    return " ".join([program] + [shlex.quote(a) for a in argv[1:]])
