"""Training's datasets, read from local files (no downloads): uint8 images in memory (CIFAR,
digits) or files (a folder of class folders), the held-out split."""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..inference.images import is_image_path
from ..util.integrity import printable
from ..util.progress import advance

__all__ = ["ImageSet", "read_cifar", "read_digits", "read_folder", "folder_splits", "materialize", "split_holdout"]

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Images as uint8 ``[N, C, H, W]`` (or lazily from files) with integer labels."""

    images: torch.Tensor | None
    labels: torch.Tensor
    classes: list[str]
    files: list[Path] | None = None
    file_transform: Callable[[Path], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        """Where the images are: a device for an in-memory set (see ``train.inputs.resident``),
        the CPU for one read from files."""
        return self.images.device if self.images is not None else torch.device("cpu")

    @property
    def channels(self) -> int:
        if self.images is not None:
            return self.images.shape[1]
        return self.file_transform(self.files[0]).shape[0]  # type: ignore[misc,index]

    def subset(self, index: torch.Tensor) -> ImageSet:
        idx = index.tolist()
        if self.images is not None:
            return ImageSet(self.images[index], self.labels[index], self.classes)
        return ImageSet(
            None,
            self.labels[index],
            self.classes,
            [self.files[i] for i in idx],  # type: ignore[index]
            self.file_transform,
        )


class ImageSetDataset(Dataset):
    """``(uint8 image [C, H, W], label)`` pairs of an :class:`ImageSet`."""

    def __init__(self, data: ImageSet) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        d = self.data
        image = d.images[i] if d.images is not None else d.file_transform(d.files[i])  # type: ignore[index,misc]
        return image, int(d.labels[i])


_CIFAR = {
    # kind: (record bytes, label byte offset, train files, test files, label-name file, classes)
    "cifar10": (3073, 0, [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"], "batches.meta.txt", 10),
    "cifar100": (3074, 1, ["train.bin"], ["test.bin"], "fine_label_names.txt", 100),
}
_CIFAR_SUBDIRS = {"cifar10": "cifar-10-batches-bin", "cifar100": "cifar-100-binary"}


def _cifar_dir(root: Path, kind: str) -> Path:
    sub = root / _CIFAR_SUBDIRS[kind]
    return sub if sub.is_dir() else root


def read_cifar(root: str | os.PathLike, kind: str, train: bool) -> ImageSet:
    """CIFAR-10/100 from the published binary version (``*.bin`` records, no pickle).

    CIFAR-10: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major).
    CIFAR-100: 1 coarse + 1 fine label byte + 3072 pixel bytes; the fine label is used.
    """
    if kind not in _CIFAR:
        raise InputError(f"unknown CIFAR kind {kind!r}; choose cifar10 or cifar100")
    record, label_at, train_files, test_files, names_file, n_classes = _CIFAR[kind]
    root = _cifar_dir(Path(root), kind)
    chunks: list[torch.Tensor] = []
    for name in train_files if train else test_files:
        path = root / name
        if not path.is_file():
            raise InputError(
                f"{path} not found: --data must be the directory of the CIFAR binary version "
                f"({_CIFAR_SUBDIRS[kind]}/ with {', '.join(train_files + test_files)})"
            )
        raw = path.read_bytes()
        if len(raw) == 0 or len(raw) % record:
            raise InputError(
                f"{path} is {len(raw)} bytes, not a whole number of {record}-byte {kind} records "
                "(truncated, or the python/pickle version instead of the binary one?)"
            )
        chunks.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, record))
    rows = torch.cat(chunks)
    labels = rows[:, label_at].long()
    if int(labels.max()) >= n_classes:
        raise InputError(f"{root}: label {int(labels.max())} is out of range for {kind} ({n_classes} classes)")
    images = rows[:, record - 3072 :].reshape(-1, 3, 32, 32).contiguous()
    names_path = root / names_file
    if names_path.is_file():
        classes = [c for c in names_path.read_text().splitlines() if c.strip()][:n_classes]
    else:
        classes = [str(i) for i in range(n_classes)]
    return ImageSet(images, labels, classes)


def digits_image(values: Any) -> Any:
    """An 8x8 scikit-learn digit (0 = paper .. 16 = ink) as an ordinary grey picture:
    dark ink on white paper, as a scan or a drawing would be."""
    from PIL import Image

    pixels = bytes(int(round(255 - float(v) * 255 / 16)) for v in values)
    return Image.frombytes("L", (8, 8), pixels)


def read_digits(transform: Callable[[Any], torch.Tensor]) -> ImageSet:
    """scikit-learn's 1,797 digits, each turned into a grey picture and through ``transform``
    (which must return uint8 ``[1, H, W]``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InputError("the digits dataset comes from scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    images = torch.stack([transform(digits_image(row)) for row in bunch.data])
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    return ImageSet(images, labels, [str(i) for i in range(10)])


def read_folder(root: str | os.PathLike, transform: Callable[[Path], torch.Tensor], *, min_images: int = 2) -> ImageSet:
    """An ImageFolder-style directory: ``root/<class name>/<image>``; classes sorted by name.
    Each class needs ``min_images`` images (2 to train on: one can be held out); a class with
    fewer would train a model on the other classes only, and report its accuracy as if not."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory of class folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InputError(f"{root} needs at least two class folders (root/<class>/<image>), found {classes}")
    files, labels = [], []
    for i, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and is_image_path(p))
        files += found
        labels += [i] * len(found)
    if not files:
        raise InputError(f"no images under {root}/<class>/")
    per_class = Counter(labels)  # one pass: a count per class would pass over every label again
    counts = [per_class[i] for i in range(len(classes))]
    few = [f"{printable(name)!r} ({n})" for name, n in zip(classes, counts) if n < min_images]
    if few:
        raise InputError(
            f"{root}: every class needs at least {min_images} images to train on; {', '.join(few[:10])} "
            f"{'has' if len(few) == 1 else 'have'} fewer: add images, or remove the folder"
        )
    return ImageSet(None, torch.tensor(labels), classes, files, transform)


# Folder names that say "this is a split of a data set", not a class.
TRAIN_SPLITS = ("train", "training")
HELDOUT_SPLITS = ("val", "valid", "validation", "test", "testing", "eval", "dev")


def folder_splits(root: str | os.PathLike) -> tuple[Path, Path] | None:
    """``(train, held-out)`` directories of a split layout, or None for a plain class folder.

    ``root/train`` with ``root/val`` (or ``valid``/``validation``) or ``root/test``: a split
    layout (``val`` is preferred when both are there). A root whose sub-folders look like splits
    in any other way (``train`` alone, ``test`` + ``val``, ``training`` + ``classes``...) would
    otherwise be read as classes named after the splits: that is an error that says so.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory of class folders")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    lower = {name.lower(): name for name in subdirs}
    train = next((lower[n] for n in TRAIN_SPLITS if n in lower), None)
    held = next((lower[n] for n in HELDOUT_SPLITS if n in lower), None)
    if train is not None and held is not None:
        extra = sorted(subdirs - {train, held} - {lower[n] for n in HELDOUT_SPLITS if n in lower})
        if extra:
            raise InputError(
                f"{root} holds the splits {train}/ and {held}/ and also {extra}: a split layout "
                "holds only root/train/<class>/ and root/val/<class>/ (or root/test/<class>/)"
            )
        return root / train, root / held
    split_like = sorted(n for n in subdirs if n.lower() in TRAIN_SPLITS + HELDOUT_SPLITS)
    if split_like:
        raise InputError(
            f"{root} has sub-folders named like data-set splits ({', '.join(split_like)}) but not a "
            "recognised pair, so they cannot be read as classes: use root/train/<class>/ with "
            "root/val/<class>/ or root/test/<class>/, or point --data at a folder of class folders"
        )
    return None


def materialize(
    data: ImageSet, *, max_bytes: int = 4 << 30, workers: int = 0, progress: bool = False, desc: str = "decoding"
) -> ImageSet:
    """Decode a file-backed set once into a uint8 tensor, when it fits in ``max_bytes``.

    Training then indexes memory instead of decoding every image every epoch. A set too large
    for the budget is returned as it is (decoded per batch by a DataLoader).
    """
    if data.images is not None or not data.files:
        return data
    dataset = ImageSetDataset(data)  # the same per-file decoding as training without this step
    first = dataset[0][0]
    if first.dtype != torch.uint8:
        raise InputError(f"{data.files[0]}: expected a uint8 image, got {first.dtype}")
    need = first.numel() * first.element_size() * len(data.files)
    if need > max_bytes:
        log.info(
            "%d images need %.1f GB decoded (> %.1f GB): decoding them per batch instead",
            len(data.files),
            need / 1e9,
            max_bytes / 1e9,
        )
        return data
    from tqdm.auto import tqdm

    images = torch.empty((len(data.files), *first.shape), dtype=torch.uint8)
    images[0] = first
    rest = torch.utils.data.Subset(dataset, range(1, len(dataset)))
    loader = torch.utils.data.DataLoader(rest, batch_size=256, num_workers=workers)
    at = 1
    with tqdm(total=len(data.files), initial=1, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for batch, _ in loader:  # the labels stay data.labels
            if batch.dtype != torch.uint8:
                raise InputError(f"{data.files[at]}...: expected uint8 images, got {batch.dtype}")
            images[at : at + len(batch)] = batch
            at += len(batch)
            advance(bar, len(batch))
    return ImageSet(images, data.labels, data.classes)


def split_holdout(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """A fixed random split: the same ``seed`` always holds out the same images."""
    if not 0 < fraction < 1:
        raise InputError(f"held-out fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    n_val = max(1, int(round(len(data) * fraction)))
    return data.subset(order[n_val:].sort().values), data.subset(order[:n_val].sort().values)
