"""Training: the paper's CIFAR recipe, one process or many (torchrun + DDP), resumable.

He et al. 2016, section 4.2: SGD with momentum 0.9, weight decay 1e-4, batch 128, learning
rate 0.1 divided by 10 at 50% and 75% of training (32k and 48k of 64k iterations), 4-pixel
padding + random 32x32 crop + horizontal flip. Every hyper-parameter is a field of
:class:`TrainConfig`.

Determinism: the data order comes from a DistributedSampler seeded by ``seed`` and the epoch,
the augmentation from a generator seeded by ``(seed, epoch, rank)``, and the learning rate is
a function of the step; a checkpoint therefore needs only weights, optimizer state and the
epoch, and a resumed run ends with the same weights as an uninterrupted one (CPU, same
threads). Checkpoints hold no pickle: safetensors for tensors, JSON for the rest, written to
temporary names and renamed, the JSON (which records the others' sha256) last.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import check_positive_int
from .errors import CheckpointError, ConfigError, InputError
from .cpu import cpu_capabilities
from .manifest import Preprocessing

__all__ = ["TrainConfig", "train", "DATASETS"]

log = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar100", "folder")
SCHEDULES = ("step", "cosine")
PRECISIONS = ("auto", "float32", "bfloat16")
CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainConfig:
    """Everything a training run depends on; defaults are the paper's CIFAR recipe."""

    arch: str
    dataset: str
    out: str
    data: str | None = None  # directory of cifar10/cifar100/folder data
    epochs: int = 30
    batch_size: int = 128  # global: divided between the processes of a distributed run
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training where lr *= gamma
    gamma: float = 0.1
    schedule: str = "step"  # "step": the paper's drops at milestones; "cosine": cosine decay to 0
    warmup_epochs: float = 0.0  # linear warm-up from lr/10, in epochs (before the schedule)
    nesterov: bool = False
    pad: int = 4  # random-crop padding, pixels
    flip: bool | None = None  # horizontal flips; None = yes, except for digits (a flipped 2 is no 2)
    invert: float = 0.0  # probability of inverting an image (255 - x): teaches both polarities
    seed: int = 0
    workers: int = 0
    val_fraction: float = 0.2  # held out when the dataset has no test split of its own
    input_size: int | None = None  # default: the architecture's
    pretrained: str | None = None  # fine-tune from these weights (any create() spec)
    resume: bool = False
    limit_train: int | None = None  # use only the first N training images (smoke tests)
    label_smoothing: float = 0.0
    # "auto": bfloat16 autocast where the CPU has fast bf16 (AVX512-BF16 / AMX), else float32.
    precision: str = "auto"
    progress: bool = True
    command: str = ""  # recorded in the model card
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if self.dataset in ("cifar10", "cifar100", "folder") and not self.data:
            raise ConfigError(f"dataset {self.dataset!r} is read from local files: give --data DIR")
        for name in ("epochs", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise ConfigError(
                f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0; got lr={self.lr}, "
                f"momentum={self.momentum}, weight_decay={self.weight_decay}"
            )
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones are fractions of training in (0, 1), got {list(self.milestones)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise ConfigError(f"warmup_epochs must be in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not 0 <= self.invert <= 1:
            raise ConfigError(f"invert is a probability in [0, 1], got {self.invert}")
        if self.pad < 0 or self.workers < 0:
            raise ConfigError(f"pad and workers must be >= 0, got pad={self.pad}, workers={self.workers}")

    def recipe(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed."""
        keep = ("arch", "dataset", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                "milestones", "gamma", "schedule", "warmup_epochs", "nesterov", "pad", "flip", "invert",
                "seed", "val_fraction", "input_size", "limit_train", "label_smoothing", "precision")
        d = asdict(self)
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keep}


# --- Distributed plumbing ------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    return _Dist(rank, world, local_rank, device)


def _all_reduce_sum(values: list[float], dist: _Dist) -> list[float]:
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def _barrier(dist: _Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()


# --- Data ------------------------------------------------------------------------------------

def _load_data(cfg: TrainConfig, input_size: int, img_channels: int):
    from PIL import Image

    from .data import folder_splits, materialize, read_cifar, read_digits, read_folder, split_holdout
    from .transforms import Preprocess, load_image
    from .transforms import to_uint8_tensor as _uint8_tensor

    if cfg.dataset == "digits":
        def digit(img: Any) -> torch.Tensor:
            return _uint8_tensor(img.resize((input_size, input_size), Image.BILINEAR))

        train, val = split_holdout(read_digits(digit), cfg.val_fraction, cfg.seed)
        interpolation = "bilinear"
    elif cfg.dataset in ("cifar10", "cifar100"):
        train = read_cifar(cfg.data, cfg.dataset, train=True)
        val = read_cifar(cfg.data, cfg.dataset, train=False)
        interpolation = "bilinear"
    else:
        sizer = Preprocess(Preprocessing(input_size, 1.0, "bilinear", mean=(0.0,) * img_channels,
                                         std=(1.0,) * img_channels), channels=img_channels)

        def from_file(path: Path) -> torch.Tensor:
            return _uint8_tensor(sizer.resize_and_crop(load_image(path, img_channels)))

        splits = folder_splits(cfg.data)
        if splits is not None:
            train, val = read_folder(splits[0], from_file), read_folder(splits[1], from_file)
            if train.classes != val.classes:
                raise InputError(f"{splits[0]} and {splits[1]} hold different classes: "
                                 f"{train.classes} vs {val.classes}")
        else:
            train, val = split_holdout(read_folder(cfg.data, from_file), cfg.val_fraction, cfg.seed)
        interpolation = "bilinear"
    if cfg.limit_train is not None:
        train = train.subset(torch.arange(min(cfg.limit_train, len(train))))
    # File-backed sets are decoded once into memory where they fit: no decoding inside the epochs.
    train = materialize(train, workers=cfg.workers, progress=cfg.progress, desc="decoding train")
    val = materialize(val, workers=cfg.workers, progress=cfg.progress, desc="decoding held-out")
    return train, val, interpolation


def _channel_stats(data: Any, invert: float = 0.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images in [0, 1] (the normalisation), as the
    network sees them: a share ``invert`` of them inverted."""
    from .data import ImageSetDataset

    if data.images is not None:
        x = data.images.float().div_(255)
    else:
        ds = ImageSetDataset(data)
        x = torch.stack([ds[i][0] for i in range(min(len(ds), 2000))]).float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3))
    if invert:  # a mixture of x and 1 - x: same variance, means m and 1 - m
        var = var + invert * (1 - invert) * (1 - 2 * mean) ** 2
        mean = invert * (1 - mean) + (1 - invert) * mean
    std = var.sqrt().clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _augment(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator,
             invert: float = 0.0) -> torch.Tensor:
    """Zero-pad ``pad`` pixels, crop back at a random offset, flip half of the images, invert
    (uint8: ``255 - x``) a share ``invert`` of them.

    Works on uint8 (or float) batches ``[B, C, H, W]`` with one gather for the whole batch:
    no per-image Python.
    """
    b, c, h, w = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), generator=g)
        dx = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), generator=g)
        rows = dy + torch.arange(h).view(1, 1, h, 1)
        cols = dx + torch.arange(w).view(1, 1, 1, w)
        x = padded[torch.arange(b).view(b, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]
    if flip:
        mask = torch.rand(b, generator=g) < 0.5
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(-1), x)
    if invert:
        mask = torch.rand(b, generator=g) < invert
        x = torch.where(mask.view(b, 1, 1, 1), (255 if x.dtype == torch.uint8 else 1) - x, x)
    return x


def _batches(data: Any, indices: list[int], batch_size: int, workers: int):
    """uint8 ``[B, C, H, W]`` images and labels, ``batch_size`` of ``indices`` at a time.

    In-memory sets are indexed directly; file-backed ones are decoded by a DataLoader.
    """
    if data.images is not None:
        index = torch.tensor(indices, dtype=torch.long)
        for start in range(0, len(index), batch_size):
            i = index[start:start + batch_size]
            yield data.images[i], data.labels[i]
        return
    from .data import ImageSetDataset

    chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    yield from torch.utils.data.DataLoader(ImageSetDataset(data), batch_sampler=chunks,
                                           num_workers=workers)


# --- Checkpoints --------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    from .hub import sha256_file

    return sha256_file(path)


def _atomic_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     epoch: int, metrics: list[dict], cfg: TrainConfig) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    buffers = {f"{i}.{k}": v for i, state in opt["state"].items() for k, v in state.items()
               if isinstance(v, torch.Tensor)}
    files = {"model.safetensors": {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
             "optimizer.safetensors": {k: v.contiguous().cpu() for k, v in buffers.items()}}
    digests = {}
    for name, tensors in files.items():
        tmp = directory / (name + ".tmp")
        save_file(tensors, str(tmp))
        digests[name] = _sha256(tmp)
        os.replace(tmp, directory / name)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    # Written last: a state.json whose digests match the files marks a complete checkpoint.
    _atomic_json(directory / "state.json", {
        "epoch": epoch, "recipe": cfg.recipe(), "sha256": digests, "param_groups": groups,
        "metrics": metrics,
    })


def _load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                     cfg: TrainConfig) -> tuple[int, list[dict]]:
    from safetensors.torch import load_file

    state_path = directory / "state.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot resume: {state_path} is unreadable ({e})") from None
    for name, digest in state["sha256"].items():
        path = directory / name
        if not path.is_file() or _sha256(path) != digest:
            raise CheckpointError(
                f"cannot resume: {path} does not match {state_path} (a write was interrupted); "
                "delete the checkpoint directory to start over"
            )
    if state["recipe"] != cfg.recipe():
        diff = sorted(k for k in cfg.recipe() if state["recipe"].get(k) != cfg.recipe()[k])
        raise CheckpointError(f"cannot resume {directory}: the run's settings differ in {diff}")
    model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
    buffers = load_file(str(directory / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in buffers.items():
        i, name = key.split(".", 1)
        opt_state.setdefault(int(i), {})[name] = value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return int(state["epoch"]), list(state["metrics"])


# --- The loop -------------------------------------------------------------------------------------

def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warmup = round(cfg.warmup_epochs * total / cfg.epochs)
    if step < warmup:  # linear from lr/10 to lr
        return cfg.lr * (0.1 + 0.9 * step / warmup)
    if cfg.schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    drops = sum(1 for m in cfg.milestones if step >= math.floor(m * total))
    return cfg.lr * cfg.gamma ** drops


def _evaluate(model: nn.Module, data: Any, normalize: Any, device: torch.device,
              workers: int = 0, batch_size: int = 256) -> tuple[float, float]:
    """Held-out loss and accuracy, in float32 (no autocast: the figure a user will reproduce)."""
    was = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for x, y in _batches(data, list(range(len(data))), batch_size, workers):
            y = y.to(device)
            logits = model(normalize(x.to(device)))
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train(was)
    return loss_sum / len(data), correct / len(data)


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 for autocast, or None for plain float32."""
    if cfg.precision == "float32":
        return None
    if device.type != "cpu":
        return torch.bfloat16 if cfg.precision == "bfloat16" else None
    from . import cpu

    if cfg.precision == "bfloat16":
        return cpu.resolve_dtype(torch.bfloat16)  # refused at once where bf16 is not fast
    return torch.bfloat16 if cpu.cpu_capabilities().fast_bf16 else None


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run ``cfg``; returns the final metrics. Writes to ``cfg.out``:

    ``metrics.json`` (one entry per epoch), ``curves.png``, ``checkpoint/`` (resumable), and
    the final model as a ``save_pretrained`` directory (``config.json``, ``model.safetensors``,
    ``README.md`` with the command and the held-out accuracy).
    """
    from tqdm.auto import tqdm

    from .factory import create
    from .pretrained import PretrainedInfo
    from .registry import get_entry

    dist = _setup_distributed()
    entry = get_entry(cfg.arch)
    input_size = cfg.input_size or entry.input_size
    img_channels = 1 if cfg.dataset == "digits" else 3
    train_set, val_set, interpolation = _load_data(cfg, input_size, img_channels)
    mean_t, std_t = _channel_stats(train_set, cfg.invert)
    # uint8 [0, 255] -> normalised float, channels-last (oneDNN's preferred layout), in one pass.
    scale = (1 / (255 * torch.tensor(std_t, device=dist.device))).view(1, -1, 1, 1)
    shift = (-torch.tensor(mean_t, device=dist.device) / torch.tensor(std_t, device=dist.device)).view(1, -1, 1, 1)

    def normalize(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(shift, x.float(), scale).contiguous(memory_format=torch.channels_last)

    autocast = _autocast_dtype(cfg, dist.device)
    flip = cfg.flip if cfg.flip is not None else cfg.dataset != "digits"
    if cfg.batch_size % dist.world:
        raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the {dist.world} processes")
    per_rank = cfg.batch_size // dist.world

    torch.manual_seed(cfg.seed)
    model = create(cfg.arch, pretrained=cfg.pretrained or False, num_classes=len(train_set.classes),
                   img_channels=img_channels).to(dist.device, memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    out = Path(cfg.out)
    ckpt_dir = out / CHECKPOINT_DIR
    start_epoch, history = 0, []
    if cfg.resume and (ckpt_dir / "state.json").is_file():
        start_epoch, history = _load_checkpoint(ckpt_dir, model, optimizer, cfg)
        if dist.main:
            log.info("resuming %s after epoch %d", out, start_epoch)
    elif cfg.resume and dist.main:
        log.info("no checkpoint in %s: starting from scratch", ckpt_dir)
    wrapped: nn.Module = model
    if dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)

    from .data import ImageSetDataset

    sampler = torch.utils.data.DistributedSampler(ImageSetDataset(train_set), num_replicas=dist.world,
                                                  rank=dist.rank, shuffle=True, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    total_steps = steps_per_epoch * cfg.epochs
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        log.info("%s on %s: %d train / %d held-out images, %d classes, %d process(es), %d steps, %s",
                 cfg.arch, cfg.dataset, len(train_set), len(val_set), len(train_set.classes),
                 dist.world, total_steps, f"{autocast} autocast" if autocast else "float32")
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + dist.rank)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
        correct = torch.zeros((), dtype=torch.long, device=dist.device)
        seen = 0
        start = time.perf_counter()
        batches = _batches(train_set, list(sampler), per_rank, cfg.workers)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (cfg.progress and dist.main), leave=False)
        for i, (x, y) in enumerate(bar):
            step = epoch * steps_per_epoch + i
            lr = _lr_at(step, total_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = normalize(_augment(x, cfg.pad, flip, g, cfg.invert).to(dist.device))
            y = y.to(dist.device)
            with torch.autocast(dist.device.type, dtype=autocast or torch.bfloat16,
                                enabled=autocast is not None):
                logits = wrapped(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        loss_sum, correct = loss_sum.item(), correct.item()
        elapsed = time.perf_counter() - start
        loss_sum, correct, seen = _all_reduce_sum([loss_sum, correct, seen], dist)
        if dist.main:
            val_loss, val_acc = _evaluate(model, val_set, normalize, dist.device, cfg.workers)
            record = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen,
                      "train_acc": correct / seen, "val_loss": val_loss, "val_acc": val_acc,
                      "seconds": elapsed, "images_per_s": seen / elapsed}
            history.append(record)
            log.info("epoch %d: train loss %.4f acc %.4f | held-out loss %.4f acc %.4f | %.1f img/s",
                     epoch + 1, record["train_loss"], record["train_acc"], val_loss, val_acc,
                     record["images_per_s"])
            _atomic_json(out / "metrics.json", history)
            _plot(history, out / "curves.png", cfg)
            _save_checkpoint(ckpt_dir, model, optimizer, epoch + 1, history, cfg)
        _barrier(dist)
    final = history[-1] if history else {}
    if dist.main:
        model.pretrained_cfg = PretrainedInfo(
            source=f"trained by resnet_zoo on {cfg.dataset}",
            preprocessing=Preprocessing(input_size, 1.0, interpolation, mean=mean_t, std=std_t),
            labels=tuple(train_set.classes),
            description=f"{cfg.arch} trained on {cfg.dataset}",
            extra={"dataset": cfg.dataset, "epochs": cfg.epochs, "train_images": len(train_set),
                   "heldout_images": len(val_set), "heldout_accuracy": final.get("val_acc"),
                   "command": cfg.command or _python_command(cfg), "recipe": cfg.recipe(),
                   "autocast": str(autocast).replace("torch.", "") if autocast else "none",
                   "cpu": cpu_capabilities().describe(), **cfg.extra},
        )
        model.arch_name = entry.name
        model.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
        model.eval().save_pretrained(out)
    _barrier(dist)
    if dist.world > 1:
        torch.distributed.destroy_process_group()
    return final


def _plot(history: list[dict], path: Path, cfg: TrainConfig) -> None:
    from .plot import line_chart

    tmp = path.with_name(path.stem + ".tmp.png")
    line_chart({"train loss": [h["train_loss"] for h in history],
                "held-out loss": [h["val_loss"] for h in history],
                "train acc": [h["train_acc"] for h in history],
                "held-out acc": [h["val_acc"] for h in history]},
               tmp, title=f"{cfg.arch} on {cfg.dataset}")
    os.replace(tmp, path)


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
