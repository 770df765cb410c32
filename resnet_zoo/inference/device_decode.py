"""Batched JPEG decoding on the model's device (``--decode gpu``): data-loader workers only read
each file's bytes; the batch is decoded in one ``torchvision.io.decode_jpeg`` call on the device
(nvJPEG on a GPU), resized and centre-cropped there.

Only what that decoder reads as the Pillow path would goes to it: baseline 3-component JPEGs
within the pixel and aspect bounds of :func:`~resnet_zoo.inference.images.load_image`, upright
(no EXIF rotation). Everything else (progressive, greyscale, CMYK, Adobe-transformed, rotated,
not a JPEG, or a batch the decoder refuses) is decoded by Pillow, one image at a time, and
counted: :attr:`DeviceDecoder.fallbacks` says how many and why. The resize is
``torch.nn.functional.interpolate`` with antialiasing: not Pillow's pixels, close to them
(features cosine >= 0.999 is what the tests hold it to), so a feature set records its decoder.
"""

from __future__ import annotations

import io
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import ConfigError, InputError
from ..util.integrity import not_a_regular_file
from .images import MAX_ASPECT, Preprocess

__all__ = [
    "read_local_bytes",
    "RawFiles",
    "collate_raw",
    "DeviceDecoder",
    "jpeg_layout",
    "decoded_batches",
    "check_decode",
    "DECODERS",
]

DECODERS = ("cpu", "gpu")
MAX_FILE_BYTES = 64 << 20  # a JPEG this large is no photo a batch decoder should take


def read_local_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file ``path`` (a FIFO or a device is refused without being
    opened, as :func:`~resnet_zoo.inference.images.load_image` refuses it), at most
    :data:`MAX_FILE_BYTES`; :class:`InputError` otherwise."""
    if problem := not_a_regular_file(path):
        raise InputError(f"image {os.fspath(path)} {problem}")
    with open(path, "rb") as f:
        return f.read(MAX_FILE_BYTES + 1)


class RawFiles(Dataset):
    """``(index, uint8 bytes or None, error or None)`` per file: workers read, nothing more.
    ``reader``: path -> bytes (default :func:`read_local_bytes`)."""

    def __init__(self, paths: Sequence[str | Path], reader: Any = read_local_bytes) -> None:
        self.paths = list(paths)
        self.reader = reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        path = self.paths[index]
        try:
            data = self.reader(path)
            if len(data) > MAX_FILE_BYTES:
                raise InputError(f"{path} is over {MAX_FILE_BYTES:,} bytes, more than --decode gpu takes")
            return index, torch.frombuffer(bytearray(data), dtype=torch.uint8), None
        except InputError as e:
            return index, None, str(e)
        except OSError as e:
            return index, None, f"cannot read {path}: {type(e).__name__}: {e}"


def collate_raw(batch: list) -> tuple[list[int], list[torch.Tensor], list[tuple[int, str]]]:
    return (
        [i for i, d, _ in batch if d is not None],
        [d for _, d, _ in batch if d is not None],
        [(i, e) for i, _, e in batch if e is not None],
    )


def _exif_orientation(segment: bytes) -> int:
    """The EXIF orientation (1: upright) of an APP1 segment's payload; 0 where it cannot be read."""
    if not segment.startswith(b"Exif\0\0"):
        return 1
    tiff = segment[6:]
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
        for k in range(count):
            entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
            tag, _, _, value = struct.unpack(order + "HHIH", entry[:10])
            if tag == 0x0112:
                return value
    except (KeyError, struct.error):
        return 0
    return 1


def jpeg_layout(data: bytes) -> tuple[str, int, int]:
    """``(kind, width, height)`` of a file's header: kind ``"baseline"`` for what the batch
    decoder takes, else why not (``"progressive"``, ``"greyscale"``, ``"cmyk"``, ``"adobe"``,
    ``"rotated"``, ``"other jpeg"``, ``"not a jpeg"``)."""
    if data[:2] != b"\xff\xd8":
        return "not a jpeg", 0, 0
    i, kind = 2, ""
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "not a jpeg", 0, 0
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 2 if marker != 0xFF else 1
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        payload = data[i + 4 : i + 2 + length]
        if marker == 0xE1 and _exif_orientation(payload) not in (1,):
            kind = kind or "rotated"
        elif marker == 0xEE and payload.startswith(b"Adobe"):
            kind = kind or "adobe"
        elif marker in (0xC0, 0xC1, 0xC2) or marker in (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if len(payload) < 6:
                return "not a jpeg", 0, 0
            height, width = struct.unpack(">HH", payload[1:5])
            components = payload[5]
            if marker == 0xC2:
                return "progressive", width, height
            if marker not in (0xC0, 0xC1):
                return "other jpeg", width, height
            if components != 3:
                return ("greyscale" if components == 1 else "cmyk"), width, height
            return kind or "baseline", width, height
        elif marker == 0xDA:
            break
        i += 2 + length
    return "not a jpeg", 0, 0


class DeviceDecoder:
    """Turns a batch of file bytes into the uint8 crops ``[B, C, S, S]`` on ``device`` that
    :meth:`Preprocess.uint8` would give (see the module's text), with Pillow for the rest."""

    def __init__(self, preprocess: Preprocess, device: torch.device) -> None:
        if preprocess.channels != 3:
            raise ConfigError("--decode gpu decodes RGB images; a 1-channel model reads with --decode cpu")
        self.preprocess, self.device = preprocess, device
        self.fallbacks: Counter[str] = Counter()
        self.decoded = 0
        from PIL import Image

        self.max_pixels = Image.MAX_IMAGE_PIXELS or 1 << 62

    def _resize_and_crop(self, img: torch.Tensor) -> torch.Tensor:
        """:meth:`Preprocess.resize_and_crop`'s geometry on a ``[C, H, W]`` uint8 tensor."""
        p = self.preprocess
        _, h, w = img.shape
        new_w, new_h = p.resized_size(w, h)
        x = img[None].float()
        if (new_h, new_w) != (h, w):
            mode = p.config.interpolation
            kwargs = {} if mode == "nearest" else {"antialias": True, "align_corners": False}
            x = F.interpolate(x, size=(new_h, new_w), mode=mode, **kwargs)
        crop = p.config.input_size
        if new_h < crop or new_w < crop:  # padded as torchvision's CenterCrop pads
            dw, dh = max(new_w, crop) - new_w, max(new_h, crop) - new_h
            x = F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
        left, top = p.crop_origin(x.shape[3], x.shape[2])
        x = x[:, :, top : top + crop, left : left + crop]
        return x.round_().clamp_(0, 255).to(torch.uint8)[0]

    def __call__(
        self, datas: list[torch.Tensor], names: list[str]
    ) -> tuple[list[torch.Tensor | None], list[str | None]]:
        """One crop (or None and an error) per file, in order."""
        from torchvision.io import ImageReadMode, decode_jpeg

        crops: list[torch.Tensor | None] = [None] * len(datas)
        errors: list[str | None] = [None] * len(datas)
        batch = []
        for k, data in enumerate(datas):
            kind, w, h = jpeg_layout(data[:65536].numpy().tobytes())
            if kind == "baseline" and w * h <= self.max_pixels and max(w, h) <= MAX_ASPECT * max(1, min(w, h)):
                batch.append(k)
            else:
                self.fallbacks[kind if kind != "baseline" else "bounds"] += 1
        if batch:
            try:
                images = decode_jpeg([datas[k] for k in batch], mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:  # a file the decoder refuses spoils the call: decode them one by one
                images = []
                for k in batch:
                    try:
                        images.append(decode_jpeg(datas[k], mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        images.append(None)
                        self.fallbacks["refused by the decoder"] += 1
            for k, img in zip(batch, images):
                if img is not None:
                    crops[k] = self._resize_and_crop(img)
                    self.decoded += 1
        for k in range(len(datas)):
            if crops[k] is None:
                try:
                    f = io.BytesIO(bytes(datas[k].numpy()))
                    f.name = names[k]
                    crops[k] = self.preprocess.uint8(f).to(self.device)
                except InputError as e:
                    errors[k] = str(e)
                except (OSError, ValueError, MemoryError) as e:
                    errors[k] = f"cannot read {names[k]} as an image: {type(e).__name__}: {e}"
        return crops, errors

    def summary(self) -> dict[str, Any]:
        return {"decoder": f"torchvision.io.decode_jpeg on {self.device.type}", "batched": self.decoded,
                "pillow_fallbacks": dict(self.fallbacks)}  # fmt: skip


def check_decode(decode: str, device: torch.device) -> None:
    """``decode`` is one of :data:`DECODERS`, and ``"gpu"`` only where the model is on a GPU."""
    if decode not in DECODERS:
        raise ConfigError(f"decode must be one of {list(DECODERS)}, got {decode!r}")
    if decode == "gpu" and device.type != "cuda":
        raise ConfigError(
            f"--decode gpu decodes on the model's GPU, and this model runs on {device}: "
            "use --device cuda, or --decode cpu"
        )


def decoded_batches(loader: Any, decoder: DeviceDecoder, paths: Sequence[Any]):
    """``(indices, normalised batch on the device or None, errors)`` from a loader of
    :class:`RawFiles` batches, as the Pillow loader's batches are."""
    for indices, datas, errors in loader:
        crops, problems = decoder(datas, [str(paths[i]) for i in indices])
        errors = list(errors) + [(i, e) for i, e in zip(indices, problems) if e is not None]
        kept = [i for i, c in zip(indices, crops) if c is not None]
        good = [c for c in crops if c is not None]
        batch = decoder.preprocess.normalize(torch.stack(good)) if good else None
        yield kept, batch, sorted(errors)
