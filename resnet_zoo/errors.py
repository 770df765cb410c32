"""The exception types users catch.

Every error that bad input or a bad file can cause derives from :class:`ResNetZooError`;
subclasses also derive from the matching built-in so ``except ValueError`` keeps working.
Messages name the bad value and what would be valid.
"""

from __future__ import annotations

__all__ = [
    "ResNetZooError",
    "ConfigError",
    "UnknownOptionError",
    "UnknownModelError",
    "InputError",
    "CheckpointError",
    "IntegrityError",
    "DownloadError",
]


class ResNetZooError(Exception):
    """Base class of every error resnet_zoo raises on bad input or a bad file."""


class ConfigError(ResNetZooError, ValueError):
    """A configuration field has a bad value, or a field name does not exist."""


class UnknownOptionError(ConfigError, TypeError):
    """A keyword that no function or config field takes: a ``TypeError`` too, as Python and
    ``timm.create_model`` raise for an unexpected keyword argument."""


class UnknownModelError(ResNetZooError, KeyError):
    """A model name (or weights tag) is not registered."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class InputError(ResNetZooError, ValueError):
    """A tensor given to a model has the wrong rank, channel count or dtype."""


class CheckpointError(ResNetZooError, ValueError):
    """A weights file or state dict cannot be used: unreadable, wrong keys, shapes or dtypes."""


class IntegrityError(CheckpointError):
    """A downloaded file's sha256 differs from the expected one (the bad copy is deleted)."""


class DownloadError(ResNetZooError, OSError):
    """Weights could not be fetched: no network, offline mode with a cold cache, or a server fault."""
