"""Training inputs: the datasets as uint8 images, their normalisation, batches, augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..inference.images import Preprocess, load_image
from ..inference.images import to_uint8_tensor as _uint8_tensor
from ..manifest import Preprocessing
from .config import TrainConfig
from .datasets import (
    ImageSet,
    ImageSetDataset,
    folder_splits,
    materialize,
    read_cifar,
    read_digits,
    read_folder,
    split_holdout,
)

__all__ = ["load_data", "channel_stats", "Normalize", "augment", "batches", "resident"]


def load_data(cfg: TrainConfig, input_size: int, img_channels: int):
    from PIL import Image

    data = cfg.data or ""  # TrainConfig refused a dataset read from files without --data
    if cfg.dataset == "digits":

        def digit(img: Any) -> torch.Tensor:
            return _uint8_tensor(img.resize((input_size, input_size), Image.Resampling.BILINEAR))

        train, val = split_holdout(read_digits(digit), cfg.val_fraction, cfg.seed)
        interpolation = "bilinear"
    elif cfg.dataset in ("cifar10", "cifar100"):
        train = read_cifar(data, cfg.dataset, train=True)
        val = read_cifar(data, cfg.dataset, train=False)
        interpolation = "bilinear"
    else:
        sizer = Preprocess(
            Preprocessing(input_size, 1.0, "bilinear", mean=(0.0,) * img_channels, std=(1.0,) * img_channels),
            channels=img_channels,
        )

        def from_file(path: Path) -> torch.Tensor:
            return _uint8_tensor(sizer.resize_and_crop(load_image(path, img_channels)))

        splits = folder_splits(data)
        if splits is not None:
            train, val = read_folder(splits[0], from_file), read_folder(splits[1], from_file, min_images=0)
            if train.classes != val.classes:
                raise InputError(
                    f"{splits[0]} and {splits[1]} hold different classes: {train.classes} vs {val.classes}"
                )
        else:
            train, val = split_holdout(read_folder(data, from_file), cfg.val_fraction, cfg.seed)
        interpolation = "bilinear"
    if cfg.limit_train is not None:
        train = train.subset(torch.arange(min(cfg.limit_train, len(train))))
    # File-backed sets are decoded once into memory where they fit: no decoding inside the epochs.
    train = materialize(train, workers=cfg.workers, progress=cfg.progress, desc="decoding train")
    val = materialize(val, workers=cfg.workers, progress=cfg.progress, desc="decoding held-out")
    return train, val, interpolation


def resident(data: ImageSet, device: torch.device) -> ImageSet:
    """An in-memory set with its uint8 images and labels on ``device`` (once: CIFAR-10's 50,000
    images are 154 MB), so that batches are indexed and augmented there; a set read from files
    stays as it is (its DataLoader decodes on the CPU)."""
    if data.images is None or data.images.device == device:
        return data
    return ImageSet(data.images.to(device), data.labels.to(device), data.classes)


def channel_stats(data: Any, invert: float = 0.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training images in [0, 1] (the normalisation), as the
    network sees them: a share ``invert`` of them inverted."""

    if data.images is not None:
        x = data.images.float().div_(255)  # before resident(): on the CPU
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


class Normalize:
    """uint8 ``[B, C, H, W]`` in [0, 255] -> normalised float, channels-last (oneDNN's preferred
    layout), in one pass."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        std_t = torch.tensor(std, device=device)
        self.scale = (1 / (255 * std_t)).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, device=device) / std_t).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(self.shift, x.float(), self.scale).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator, invert: float = 0.0) -> torch.Tensor:
    """Zero-pad ``pad`` pixels, crop back at a random offset, flip half of the images, invert
    (uint8: ``255 - x``) a share ``invert`` of them.

    Works on uint8 (or float) batches ``[B, C, H, W]`` with one gather for the whole batch:
    no per-image Python. The batch and the generator ``g`` are on the same device (a GPU for
    a resident set): every random draw and index is made there.
    """
    b, c, h, w = x.shape
    dev = g.device
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), generator=g, device=dev)
        dx = torch.randint(0, 2 * pad + 1, (b, 1, 1, 1), generator=g, device=dev)
        rows = dy + torch.arange(h, device=dev).view(1, 1, h, 1)
        cols = dx + torch.arange(w, device=dev).view(1, 1, 1, w)
        x = padded[
            torch.arange(b, device=dev).view(b, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1), rows, cols
        ]
    if flip:
        mask = torch.rand(b, generator=g, device=dev) < 0.5
        x = torch.where(mask.view(b, 1, 1, 1), x.flip(-1), x)
    if invert:
        mask = torch.rand(b, generator=g, device=dev) < invert
        x = torch.where(mask.view(b, 1, 1, 1), (255 if x.dtype == torch.uint8 else 1) - x, x)
    return x


def batches(data: Any, indices: list[int] | torch.Tensor, batch_size: int, workers: int):
    """uint8 ``[B, C, H, W]`` images and labels, ``batch_size`` of ``indices`` at a time.

    In-memory sets are indexed directly, where they are (a GPU for a resident set);
    file-backed ones are decoded by a DataLoader.
    """
    if data.images is not None:
        index = torch.as_tensor(indices, dtype=torch.long, device=data.images.device)
        for start in range(0, len(index), batch_size):
            i = index[start : start + batch_size]
            yield data.images[i], data.labels[i]
        return

    order: list[int] = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    yield from torch.utils.data.DataLoader(ImageSetDataset(data), batch_sampler=chunks, num_workers=workers)
