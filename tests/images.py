"""Real photographs shipped by scikit-learn and scikit-image, for tests (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def sample_photos() -> dict[str, Path]:
    """name -> path of real images on disk (RGB photos, a grey one, an RGBA logo, a palette GIF)."""
    found: dict[str, Path] = {}
    try:
        import sklearn.datasets

        d = Path(os.path.dirname(sklearn.datasets.__file__)) / "images"
        for name in ("china.jpg", "flower.jpg"):
            if (d / name).is_file():
                found[name] = d / name
    except ImportError:
        pass
    try:
        import skimage

        d = Path(os.path.dirname(skimage.__file__)) / "data"
        for name in (
            "chelsea.png",
            "coffee.png",
            "astronaut.png",
            "rocket.jpg",
            "camera.png",
            "logo.png",
            "no_time_for_that_tiny.gif",
        ):
            if (d / name).is_file():
                found[name] = d / name
    except ImportError:
        pass
    if len(found) < 4:
        pytest.skip("scikit-learn / scikit-image sample images are not installed")
    return found


def large_photos(directory: Path, n: int = 8, size: tuple[int, int] = (1200, 900)) -> list[Path]:
    """``n`` large JPEGs (at least 1000x750) made from the real RGB sample photos: each photo
    upscaled (bicubic) to ``size`` in a few crops, saved at quality 90."""
    from PIL import Image

    rgb = [
        p
        for name, p in sample_photos().items()
        if name.endswith((".jpg", ".png")) and name not in ("camera.png", "logo.png")
    ]
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = Image.open(rgb[i % len(rgb)]).convert("RGB")
        w, h = img.size
        k = (i // len(rgb)) % 6
        box = (k * w // 16, k * h // 16, w - k * w // 16, h - k * h // 16)  # another crop per round
        path = directory / f"large_{i:03d}.jpg"
        img.crop(box).resize(size, Image.BICUBIC).save(path, quality=90)
        out.append(path)
    return out
