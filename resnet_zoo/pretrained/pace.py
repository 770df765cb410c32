"""The pace a Hub download must keep: a deadline and a minimum speed, from the environment."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DownloadError

__all__ = ["DownloadPace", "DEADLINE_ENV", "MIN_SPEED_ENV", "WINDOW_ENV"]

# Pacing: a download slower than MIN_SPEED bytes/s over WINDOW seconds, or longer than DEADLINE
# seconds in all, is stopped. 10 kB/s over 30 s never stops a working link (a 100 MB ResNet-50 at
# 10 kB/s would take three hours) and stops a one-byte-every-5-s drip after 30 s.
DEADLINE_ENV = "RESNET_ZOO_DOWNLOAD_DEADLINE"
MIN_SPEED_ENV = "RESNET_ZOO_DOWNLOAD_MIN_SPEED"
WINDOW_ENV = "RESNET_ZOO_DOWNLOAD_SPEED_WINDOW"
DEFAULT_DEADLINE = 0.0  # none: a large file on a slow but steady link is not an error
DEFAULT_MIN_SPEED = 10_240.0
DEFAULT_WINDOW = 30.0


def _limit_expected(value: Any, *, allow_zero: bool) -> str | None:
    """``None`` when ``value`` is a valid pace limit, else what a valid one is."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    return None if ok else ("a number >= 0 (0 turns it off)" if allow_zero else "a number > 0")


def _env_seconds(name: str, default: float, *, allow_zero: bool) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if expected := _limit_expected(value, allow_zero=allow_zero):
        raise ConfigError(f"{name}={raw!r} is not valid: expected {expected}")
    return value


@dataclass
class DownloadPace:
    """The limits one download must keep, and what it has received so far.

    ``deadline``: seconds for the whole download (0: none). ``min_speed``: bytes per second,
    averaged over each ``window`` seconds (0: no minimum).
    """

    deadline: float = DEFAULT_DEADLINE
    min_speed: float = DEFAULT_MIN_SPEED
    window: float = DEFAULT_WINDOW
    label: str = "the download"
    received: int = 0
    _start: float = field(default_factory=time.monotonic, repr=False)
    _mark: tuple[float, int] = (0.0, 0)
    _body_started: bool = False

    def __post_init__(self) -> None:
        for name, value, allow_zero in (
            ("deadline", self.deadline, True),
            ("min_speed", self.min_speed, True),
            ("window", self.window, False),
        ):
            if expected := _limit_expected(value, allow_zero=allow_zero):
                raise ConfigError(f"download {name}={value!r} is not valid: expected {expected}")
        self._mark = (self._start, 0)

    @classmethod
    def from_env(cls, label: str = "the download") -> DownloadPace:
        return cls(
            deadline=_env_seconds(DEADLINE_ENV, DEFAULT_DEADLINE, allow_zero=True),
            min_speed=_env_seconds(MIN_SPEED_ENV, DEFAULT_MIN_SPEED, allow_zero=True),
            window=_env_seconds(WINDOW_ENV, DEFAULT_WINDOW, allow_zero=False),
            label=label,
        )

    def body_started(self) -> None:
        """The first body is coming: the speed is measured from here, not across the wait for
        another process's file lock. (Later bodies, huggingface_hub's resumed retries, do not
        restart it: a drip that outlasts each read timeout must still add up.)"""
        if not self._body_started:
            self._body_started = True
            self._mark = (time.monotonic(), self.received)

    def check(self, nbytes: int = 0) -> None:
        """Count ``nbytes`` more; raise :class:`DownloadError` when a limit is broken."""
        self.received += nbytes
        now = time.monotonic()
        elapsed = now - self._start
        if self.deadline and elapsed > self.deadline:
            raise DownloadError(
                f"{self.label}: stopped after {elapsed:.0f} s ({self.received:,} bytes received), over "
                f"the {self.deadline:g} s deadline set by {DEADLINE_ENV}. The part received is kept "
                "and resumed by the next attempt; raise the deadline for a slow link"
            )
        mark_t, mark_bytes = self._mark
        if self.min_speed and now - mark_t >= self.window:
            speed = (self.received - mark_bytes) / (now - mark_t)
            if speed < self.min_speed:
                raise DownloadError(
                    f"{self.label}: the server sent {speed:,.{1 if speed < 10 else 0}f} bytes/s over the last "
                    f"{now - mark_t:.0f} s, below the minimum of {self.min_speed:,.0f} bytes/s "
                    f"({MIN_SPEED_ENV}, over {WINDOW_ENV}={self.window:g} s); stopped. The part "
                    "received is kept and resumed by the next attempt; retry, or lower the minimum "
                    "(0 turns it off) for a slow link"
                )
            self._mark = (now, self.received)
