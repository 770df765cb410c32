"""Images in: reading image files (as a dataset whose errors name each file) and the
preprocessing that matches each weights' config, with Pillow and torch only.

The evaluation pipeline of torchvision and timm: resize the shorter side to
``floor(input_size / crop_pct)`` (Pillow's resampling, as torchvision uses for PIL images),
centre-crop ``input_size``, scale to [0, 1], normalise. Loading handles what real files bring:
EXIF orientation, palette and alpha images (composited on white), 16-bit and float greys.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..manifest import Preprocessing
from ..util.integrity import not_a_regular_file

__all__ = [
    "Preprocess",
    "load_image",
    "to_tensor",
    "to_uint8_tensor",
    "IMAGE_EXTENSIONS",
    "find_images",
    "ImageFiles",
    "collate_images",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _pil() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise InputError("reading images needs Pillow: pip install pillow") from None
    return Image, ImageOps


def _to_8bit(img: Any) -> Any:
    """16-bit ('I;16*', 'I') and float ('F') greys to 8-bit 'L', keeping the full range."""
    Image, _ = _pil()
    if img.mode.startswith("I;16") or img.mode == "I":
        img = img.convert("I")
        lo, hi = img.getextrema()
        scale = 1 / 257 if hi > 255 else 1.0  # 16-bit data: 65535 -> 255
        return img.point(lambda v: v * scale).convert("L")
    if img.mode == "F":
        lo, hi = img.getextrema()
        scale = 255.0 if hi <= 1.0 else 1.0  # [0, 1] floats, or already 0..255
        return img.point(lambda v: v * scale).convert("L")
    return img


# What Image.open may decode: image formats only (EPS would reach Ghostscript, PDF and others
# are not images to classify). Multi-picture camera JPEGs (MPO) open through the JPEG plugin.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Longest side / shortest side of an accepted image: a 2,000,000x1 PNG of 4 KB would otherwise
# resize to 256x512,000,000.
MAX_ASPECT = 100

# Draft-mode decoding (Preprocess(fast_decode=True) only) keeps the shorter side >=
# DRAFT_FACTOR x the resize target. It is not exact: a reduced-scale DCT decode followed by the
# resize differs from the full decode by up to 18/255 on real photos (tests/test_transforms.py).
DRAFT_FACTOR = 4


def load_image(source: str | os.PathLike | Any, channels: int = 3, *, min_size: int | None = None) -> Any:
    """Open an image (a path, a binary file object or a Pillow image) as a Pillow image of
    ``channels`` (3: RGB, 1: L), upright per its EXIF.

    ``min_size``: the shorter side the caller will resize to. A JPEG larger than that is
    decoded directly at a reduced scale (Pillow's draft mode: 1/2, 1/4 or 1/8 in the DCT) that
    keeps its shorter side >= ``min_size``, at a fraction of the decoding time.

    Transparent pixels are composited on white (a transparent PNG shows its drawing on paper,
    not on whatever colour hides under the alpha). Raises :class:`InputError` naming the file
    when it cannot be read as an image.
    """
    Image, ImageOps = _pil()
    if isinstance(source, Image.Image):
        img, name = source, "<PIL image>"
    else:
        opened = hasattr(source, "read")  # a binary file object, named by its .name
        name = str(getattr(source, "name", "<file object>")) if opened else os.fspath(source)
        if not opened and (problem := not_a_regular_file(name)):  # a FIFO would block open()
            raise InputError(f"image {name} {problem}")
        try:
            img = Image.open(source if opened else name, formats=IMAGE_FORMATS)
            if min_size and img.format == "JPEG" and min(img.size) > min_size:
                w, h = img.size
                scale = min_size / min(w, h)
                img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
            w, h = img.size
            if max(w, h) > MAX_ASPECT * max(1, min(w, h)):
                raise InputError(
                    f"{name} is {w}x{h} pixels: an aspect ratio above {MAX_ASPECT}:1 is "
                    "not a photo (its resize would allocate without bound)"
                )
            img.load()
        except FileNotFoundError:
            raise InputError(f"image {name} does not exist") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"cannot read {name} as an image: {e}") from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        pass
    if channels not in (1, 3):
        raise InputError(f"images are read with 1 or 3 channels, not {channels}")
    try:
        img = _to_8bit(img)
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        return img.convert("L" if channels == 1 else "RGB")
    except (ValueError, OSError) as e:  # a mode Pillow cannot convert (LAB to L, ...)
        raise InputError(
            f"cannot convert {name} (mode {img.mode}) to {'grey' if channels == 1 else 'RGB'}: {e}"
        ) from None


def to_uint8_tensor(img: Any) -> torch.Tensor:
    """A Pillow image (L or RGB) to a uint8 tensor ``[C, H, W]``."""
    w, h = img.size
    channels = len(img.getbands())
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(h, w, channels).permute(2, 0, 1).contiguous()


def to_tensor(img: Any) -> torch.Tensor:
    """A Pillow image (L or RGB) to a float tensor ``[C, H, W]`` in [0, 1]."""
    return to_uint8_tensor(img).float().div_(255)


class Preprocess:
    """Callable: image -> normalised tensor ``[C, input_size, input_size]``. An image is what
    ``transforms.v2`` takes: a path, a Pillow image, a ``[C, H, W]`` tensor (uint8 as
    ``read_image`` and ``v2.ToImage()`` give, or float in [0, 1]) or an ``[H, W, C]`` / ``[H, W]``
    uint8 array; each gives the pixels its Pillow image would.

    From a file it equals torchvision's ``Resize + CenterCrop + ToTensor + Normalize`` of
    ``Image.open(path).convert("RGB")`` exactly. ``fast_decode=True`` trades that for speed on
    large JPEGs: one whose shorter side is above 4x the resize target is decoded at a reduced
    scale (Pillow's draft mode, 3.7x faster at 4000x3000), which moves single pixels by up to
    18/255 (mean 0.1-0.3/255; features cosine >= 0.9999).
    """

    def __init__(self, config: Preprocessing, channels: int = 3, *, fast_decode: bool = False) -> None:
        if len(config.mean) not in (1, channels):
            raise InputError(f"preprocessing has {len(config.mean)} mean values for a {channels}-channel model")
        self.config = config
        self.channels = channels
        self.fast_decode = bool(fast_decode)
        self.resize_to = math.floor(config.input_size / config.crop_pct)
        self.mean = torch.tensor(config.mean).view(-1, 1, 1)
        self.std = torch.tensor(config.std).view(-1, 1, 1)

    def resized_size(self, w: int, h: int) -> tuple[int, int]:
        """``(width, height)`` of a ``w`` x ``h`` image once its shorter side is ``resize_to``
        (torchvision's rounding)."""
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_to, int(self.resize_to * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)

    def crop_origin(self, w: int, h: int) -> tuple[int, int]:
        """``(left, top)`` of the centre crop of a ``w`` x ``h`` image (padded to the crop first
        where smaller, as torchvision's CenterCrop pads: ``(side - w) // 2`` on the left)."""
        crop = self.config.input_size
        return int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))

    def resize_and_crop(self, img: Any) -> Any:
        """Shorter side to ``resize_to`` (torchvision's rounding), then a centre crop."""
        Image, _ = _pil()
        resample = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[
            self.config.interpolation
        ]
        size = self.resized_size(*img.size)
        if size != img.size:
            img = img.resize(size, resample)
        crop = self.config.input_size
        w, h = img.size
        if w < crop or h < crop:  # pad as torchvision's CenterCrop does
            padded = Image.new(img.mode, (max(w, crop), max(h, crop)))
            padded.paste(img, ((max(w, crop) - w) // 2, (max(h, crop) - h) // 2))
            img, (w, h) = padded, padded.size
        left, top = self.crop_origin(w, h)
        return img.crop((left, top, left + crop, top + crop))

    def _cropped(self, image: str | os.PathLike | Any) -> Any:
        if isinstance(image, torch.Tensor) or (
            hasattr(image, "__array_interface__") and not isinstance(image, _pil()[0].Image)
        ):  # a Pillow image has an array interface too
            image = _pil_from_pixels(image)
        min_size = DRAFT_FACTOR * self.resize_to if self.fast_decode else None
        return self.resize_and_crop(load_image(image, self.channels, min_size=min_size))

    def __call__(self, image: str | os.PathLike | Any) -> torch.Tensor:
        return (to_tensor(self._cropped(image)) - self.mean) / self.std

    def uint8(self, image: str | os.PathLike | Any) -> torch.Tensor:
        """The resized and cropped pixels, uint8 ``[C, S, S]``, not yet normalised: what a data
        loader hands to a GPU (4x fewer bytes over the bus than float32), where
        :meth:`normalize` finishes them."""
        return to_uint8_tensor(self._cropped(image))

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, C, S, S]`` (on any device) -> the float32 batch ``__call__`` gives, in
        the same arithmetic: ``(x / 255 - mean) / std``."""
        mean, std = self.mean.to(batch.device), self.std.to(batch.device)
        return (batch.float().div_(255) - mean) / std

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Preprocess(resize={self.resize_to}, crop={c.input_size}, {c.interpolation}, "
            f"mean={list(c.mean)}, std={list(c.std)}" + (", fast_decode=True)" if self.fast_decode else ")")
        )


def _pil_from_pixels(pixels: Any) -> Any:
    """A Pillow image of a ``[C, H, W]`` tensor (uint8, or float in [0, 1] as ``v2.ToDtype``
    scales it) or an ``[H, W(, C)]`` uint8 array, with 1, 3 or 4 channels."""
    Image, _ = _pil()
    if isinstance(pixels, torch.Tensor):
        if pixels.ndim != 3:
            raise InputError(f"an image tensor is [C, H, W], got shape {list(pixels.shape)}")
        if pixels.is_floating_point():
            pixels = (pixels.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        array = pixels.permute(1, 2, 0).cpu().contiguous().numpy()
    else:
        array = pixels
    shape, dtype = tuple(array.shape), str(array.dtype)
    if dtype != "uint8" or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise InputError(
            f"an image is [C, H, W] (tensor) or [H, W, C] (array) with 1, 3 or 4 channels of uint8, "
            f"got {type(pixels).__name__} of shape {list(shape)} and dtype {dtype}"
        )
    if len(shape) == 3 and shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


# --- Image files: found in directories, read one by one, errors kept with their file ----------


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named by ``inputs``: files as given, directories searched recursively
    (sorted, so the order is deterministic). A path that does not exist is an error."""
    inputs = list(inputs)
    if any(not str(os.fspath(item)).strip() for item in inputs):
        raise InputError(
            f"an empty input names no image (inputs: {[str(i) for i in inputs]!r}): give image files, "
            "directories or lists (an unset shell variable expands to nothing)"
        )
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_path(p)))
        elif path.is_file():
            found.append(path)
        else:
            what = (
                "does not exist"
                if not path.exists() and not path.is_symlink()
                else "is neither an image file nor a directory"
            )
            raise InputError(f"{path} {what}")
    if not found:
        raise InputError(
            f"no images found in {', '.join(map(str, inputs))} (looked for jpg/png/bmp/gif/tiff/webp/ppm files)"
        )
    return found


class ImageFiles(Dataset):
    """``(index, tensor or None, error or None)`` per image; errors are returned, not raised,
    so a DataLoader with workers can report every unreadable file by name."""

    def __init__(self, paths: Sequence[str | Path], transform: Callable[[Any], torch.Tensor]) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.transform(self.paths[index]), None
        except InputError as e:
            return index, None, str(e)
        except (OSError, ValueError, TypeError, MemoryError, RuntimeError) as e:  # a decoder or transform failing
            return index, None, f"cannot read {self.paths[index]} as an image: {type(e).__name__}: {e}"


def collate_images(batch: list[tuple[int, torch.Tensor | None, str | None]]):
    """Stack the good images of a batch; keep the indices and errors of all of them."""
    good = [(i, t) for i, t, err in batch if t is not None]
    errors = [(i, err) for i, t, err in batch if err is not None]
    tensor = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], tensor, errors
