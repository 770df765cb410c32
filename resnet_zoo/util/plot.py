"""Small PNG charts drawn with Pillow (already a dependency): no plotting library needed."""

from __future__ import annotations

import os
from typing import Sequence

__all__ = ["bar_chart", "line_chart"]

_W, _H, _M = 900, 480, 60
_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _canvas(title: str):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (_W, _H), "white")
    draw = ImageDraw.Draw(img)
    draw.text((_M, 15), title, fill="black")
    draw.line([(_M, _H - _M), (_W - 20, _H - _M)], fill="black")
    draw.line([(_M, 40), (_M, _H - _M)], fill="black")
    return img, draw


def bar_chart(
    labels: Sequence[str], values: Sequence[float], path: str | os.PathLike, *, title: str = "", unit: str = ""
) -> None:
    """One bar per label, the value written above it."""
    img, draw = _canvas(title)
    top = max(values) if values else 1.0
    n = max(len(values), 1)
    slot = (_W - _M - 40) / n
    for i, (label, v) in enumerate(zip(labels, values)):
        h = (_H - 2 * _M - 30) * (v / top if top else 0)
        x0 = _M + 10 + i * slot
        draw.rectangle([x0, _H - _M - h, x0 + slot * 0.7, _H - _M], fill=_COLOURS[i % len(_COLOURS)])
        draw.text((x0, _H - _M - h - 14), f"{v:.1f}{unit}", fill="black")
        for j, part in enumerate(_wrap(label, int(slot * 0.7 / 6))):
            draw.text((x0, _H - _M + 5 + 12 * j), part, fill="black")
    img.save(path)


def line_chart(
    series: dict[str, Sequence[float]], path: str | os.PathLike, *, title: str = "", xlabel: str = "epoch"
) -> None:
    """Each series on its own 0..max scale, x = 1..len; a legend names them with their last value."""
    img, draw = _canvas(title)
    for k, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        if not ys:
            continue
        top = max(ys) or 1.0
        n = len(ys)
        points = [
            (_M + (_W - _M - 40) * (i / max(n - 1, 1)), _H - _M - (_H - 2 * _M - 30) * (y / top))
            for i, y in enumerate(ys)
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for p in points:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        draw.text((_W - 260, 40 + 14 * k), f"{name} (max {top:.4g}, last {ys[-1]:.4g})", fill=colour)
    draw.text((_W // 2, _H - 20), xlabel, fill="black")
    img.save(path)


def _wrap(text: str, width: int) -> list[str]:
    width = max(width, 4)
    return [text[i : i + width] for i in range(0, len(text), width)][:3]
