"""TrainConfig: everything a training run depends on, and the ``resnet-zoo train`` flags.

Each field carries its own help (and choices) in its metadata: the command line is generated
from :func:`dataclasses.fields`, so a new training option is one edit here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..util.checks import check_positive_int, is_int, is_number

__all__ = ["TrainConfig", "DATASETS", "SCHEDULES", "PRECISIONS"]

DATASETS = ("digits", "cifar10", "cifar100", "folder")
SCHEDULES = ("step", "cosine")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

# Fields that are not command-line flags: the positional architecture, and what the CLI sets itself.
# (device, compile and deterministic are not in the recipe: a checkpoint resumes on any device.)
NOT_FLAGS = ("arch", "progress", "command", "extra")


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A field with its command-line help (and argparse extras such as ``choices``)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything a training run depends on; defaults are the paper's CIFAR recipe.

    He et al. 2016, section 4.2: SGD with momentum 0.9, weight decay 1e-4, batch 128, learning
    rate 0.1 divided by 10 at 50% and 75% of training, 4-pixel padding + random crop + flip.
    """

    arch: str = field(metadata={"help": "architecture, e.g. cifar_resnet20"})
    dataset: str = field(metadata={"help": "what to train on", "choices": DATASETS})
    out: str = field(metadata={"help": "output directory (checkpoints, metrics, final model)"})
    data: str | None = _option(None, "directory of the CIFAR binary files or of class folders")
    epochs: int = _option(30, "epochs to train (default 30)")
    # Global: divided between the processes of a distributed run.
    batch_size: int = _option(128, "global batch size, divided between processes (default 128)")
    lr: float = _option(0.1, "peak learning rate (default 0.1)")
    momentum: float = _option(0.9, "SGD momentum (default 0.9)")
    weight_decay: float = _option(1e-4, "weight decay (default 1e-4)")
    milestones: tuple[float, ...] = _option(
        (0.5, 0.75), "fractions of training where the lr is multiplied by --gamma (default 0.5 0.75)"
    )
    gamma: float = _option(0.1, "lr factor at each milestone (default 0.1)")
    schedule: str = _option(
        "step", "step: the paper's drops at --milestones; cosine: cosine decay to 0", choices=SCHEDULES
    )
    warmup_epochs: float = _option(0.0, "linear learning-rate warm-up from lr/10, in epochs (default 0)")
    nesterov: bool = _option(False, "Nesterov momentum")
    pad: int = _option(4, "random-crop padding in pixels (0: no crop; default 4)")
    # None = yes, except for digits: a flipped 2 is no 2.
    flip: bool | None = _option(None, "horizontal flips (default: yes, except for digits)")
    # Teaches both polarities (ink on paper and white on black).
    invert: float = _option(0.0, "invert a share P of the training images (default 0)", metavar="P")
    seed: int = _option(0, "seed of the data order, augmentation and initialisation (default 0)")
    workers: int = _option(0, "data-loading processes (default 0)")
    val_fraction: float = _option(0.2, "held-out fraction where the dataset has no test split (default 0.2)")
    input_size: int | None = _option(None, "image size (default: the architecture's)")
    pretrained: str | None = _option(None, "fine-tune from these weights (any create() spec)", metavar="SPEC")
    resume: bool = _option(False, "continue from OUT/checkpoint")
    limit_train: int | None = _option(None, "use only the first N training images", metavar="N")
    label_smoothing: float = _option(0.0, "label smoothing of the loss (default 0)")
    precision: str = _option(
        "auto",
        "auto: on a GPU bfloat16 autocast (float16 with a GradScaler below compute capability 8.0); "
        "on the CPU bfloat16 autocast where it has fast bf16 (AVX512-BF16 or AMX), else float32 "
        "(see `resnet-zoo info --cpu` and `--device`)",
        choices=PRECISIONS,
    )
    device: str = _option("auto", "auto (CUDA where there is a GPU; rank r: cuda:LOCAL_RANK), cpu, cuda or cuda:N")
    compile: bool = _option(False, "torch.compile the model (static shapes)")
    deterministic: bool = _option(False, "deterministic algorithms only: two runs give bit-identical weights")
    time_budget_min: float | None = _option(
        None,
        "fit the schedule to M minutes: after the first epoch, the epochs that fit (evaluation included, "
        "at most --epochs) become the run's length; use with --schedule cosine and --warmup-epochs >= 1",
        metavar="M",
    )
    progress: bool = True
    command: str = ""  # recorded in the model card
    extra: dict[str, Any] = field(default_factory=dict)  # recorded in the model card

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if self.dataset in ("cifar10", "cifar100", "folder") and not self.data:
            raise ConfigError(f"dataset {self.dataset!r} is read from local files: give --data DIR")
        for name in ("epochs", "batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in (
            "lr",
            "momentum",
            "weight_decay",
            "gamma",
            "warmup_epochs",
            "invert",
            "val_fraction",
            "label_smoothing",
        ):
            value = getattr(self, name)
            if not is_number(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not all(math.isfinite(m) for m in self.milestones):
            raise ConfigError(f"milestones must be finite fractions, got {list(self.milestones)}")
        if self.gamma <= 0:
            raise ConfigError(f"gamma must be > 0, got {self.gamma}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("input_size", "limit_train"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if not is_int(self.seed, 0, 2**63 - 1):
            raise ConfigError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
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
        if not isinstance(self.device, str):
            self.device = str(self.device)  # a torch.device
        if self.time_budget_min is not None and not (is_number(self.time_budget_min) and self.time_budget_min > 0):
            raise ConfigError(f"time_budget_min must be a number of minutes > 0, got {self.time_budget_min!r}")
        if self.pad < 0 or self.workers < 0:
            raise ConfigError(f"pad and workers must be >= 0, got pad={self.pad}, workers={self.workers}")

    @property
    def img_channels(self) -> int:
        """Channels of the images the run trains on: 1 for the grey digits, 3 otherwise."""
        return 1 if self.dataset == "digits" else 3

    def recipe(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed."""
        keep: tuple[str, ...] = (
            "arch",
            "dataset",
            "epochs",
            "batch_size",
            "lr",
            "momentum",
            "weight_decay",
            "milestones",
            "gamma",
            "schedule",
            "warmup_epochs",
            "nesterov",
            "pad",
            "flip",
            "invert",
            "seed",
            "val_fraction",
            "input_size",
            "limit_train",
            "label_smoothing",
            "precision",
            "time_budget_min",
        )
        d = asdict(self)
        if d["time_budget_min"] is None:  # absent, as in the checkpoints written before it existed
            keep = tuple(k for k in keep if k != "time_budget_min")
        return {k: (list(d[k]) if isinstance(d[k], tuple) else d[k]) for k in keep}
