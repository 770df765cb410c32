"""Training: the paper's CIFAR recipe, one process or many (torchrun + DDP), resumable.

- :mod:`.config`: :class:`TrainConfig`, every hyper-parameter (and the CLI's flags).
- :mod:`.inputs`: datasets as uint8 images, normalisation, batches, augmentation.
- :mod:`.loop`: :func:`train`, :func:`train_one_epoch`, :func:`evaluate`, the schedule.
- :mod:`.checkpoint`: resumable checkpoints (safetensors + JSON, no pickle).
- :mod:`.dist`: torchrun's environment and the collectives.
"""

from .config import DATASETS, TrainConfig
from .loop import command_line, evaluate, lr_at, train, train_one_epoch

__all__ = ["DATASETS", "TrainConfig", "command_line", "evaluate", "lr_at", "train", "train_one_epoch"]
