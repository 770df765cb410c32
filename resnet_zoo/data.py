"""Datasets read from local files (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from .errors import InputError
from .transforms import is_image_path

__all__ = ["find_images", "ImageFiles"]


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named by ``inputs``: files as given, directories searched recursively
    (sorted, so the order is deterministic). A path that does not exist is an error."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path} is neither an image file nor a directory")
    if not found:
        raise InputError(
            f"no images found in {', '.join(map(str, inputs))} (looked for "
            "jpg/png/bmp/gif/tiff/webp/ppm files)"
        )
    return found


class ImageFiles(Dataset):
    """``(index, tensor or None, error or None)`` per image; errors are returned, not raised,
    so a DataLoader with workers can report every unreadable file by name."""

    def __init__(self, paths: Sequence[Path], transform: Callable[[Path], torch.Tensor]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.transform(self.paths[index]), None
        except InputError as e:
            return index, None, str(e)


def collate_images(batch: list[tuple[int, torch.Tensor | None, str | None]]):
    """Stack the good images of a batch; keep the indices and errors of all of them."""
    good = [(i, t) for i, t, err in batch if t is not None]
    errors = [(i, err) for i, t, err in batch if err is not None]
    tensor = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], tensor, errors
