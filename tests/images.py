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
        for name in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png",
                     "logo.png", "no_time_for_that_tiny.gif"):
            if (d / name).is_file():
                found[name] = d / name
    except ImportError:
        pass
    if len(found) < 4:
        pytest.skip("scikit-learn / scikit-image sample images are not installed")
    return found
