"""What the commands share: the flag groups (model and fast path, loader, output), defaults read
from the library's signatures, and one way to print a result (text, or JSON via ``to_dict``)."""

from __future__ import annotations

import argparse
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from ..device import DEVICE_HELP
from ..errors import ConfigError
from ..inference.recipe import BACKEND_CHOICES, DTYPES, ModelRecipe

__all__ = ["default", "add_model_flags", "add_loader_flags", "add_output_flags", "recipe", "load", "emit", "check_out"]


def default(function: Callable, name: str) -> Any:
    """The default of ``function``'s parameter ``name``: flags default to the library's."""
    return inspect.signature(function).parameters[name].default


def add_model_flags(p: argparse.ArgumentParser, *, fast: bool = True) -> None:
    """--pretrained; with ``fast``, the fast path's --dtype, --backend, --calibration, --eager."""
    g = p.add_argument_group("model")
    g.add_argument("--device", default="auto", metavar="DEVICE", help=f"where the model runs: {DEVICE_HELP}")
    g.add_argument(
        "--pretrained",
        default=None,
        metavar="SPEC",
        help="weights: a tag, hf-hub:owner/repo, a .safetensors file or a directory; "
        "'none' for random init (default: the architecture's default weights)",
    )
    if not fast:
        return
    g.add_argument(
        "--dtype",
        choices=DTYPES,
        default=default(ModelRecipe, "dtype"),
        help="compute dtype of the fast path (optimize_for_inference); auto: the "
        "fastest float dtype of the device (this CPU's, see `resnet-zoo cpu`; a GPU's 16-bit "
        "dtype, see `resnet-zoo info --device`) (default: %(default)s); float16: GPUs; int8 "
        "needs --calibration",
    )
    g.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=default(ModelRecipe, "backend"),
        help="what runs the fast path: torch (default), onnxruntime or openvino "
        "(pip install 'resnet_zoo[runtimes]'), or auto: the fastest here, "
        "timed once and cached",
    )
    g.add_argument("--calibration", metavar="DIR", help="up to 512 training images for --dtype int8")
    g.add_argument("--eager", action="store_true", help="run the plain float32 model instead of the fast path")


def add_loader_flags(p: argparse.ArgumentParser, function: Callable, *, skip_bad_help: str) -> None:
    """--batch-size, --workers and --skip-bad, defaulting to ``function``'s."""
    g = p.add_argument_group("loading images")
    g.add_argument(
        "--batch-size",
        type=int,
        default=default(function, "batch_size"),
        help="images per forward pass (default %(default)s)",
    )
    g.add_argument(
        "--workers", type=int, default=default(function, "num_workers"), help="decoding processes (default %(default)s)"
    )
    g.add_argument("--skip-bad", action="store_true", help=skip_bad_help)
    g.add_argument(
        "--decode",
        choices=("cpu", "gpu"),
        default=default(function, "decode"),
        help="cpu: workers decode with Pillow (default); gpu: workers read, the GPU decodes each batch of "
        "JPEGs (others fall back to Pillow); needs --device cuda",
    )


def add_output_flags(
    p: argparse.ArgumentParser, *, json_help: str = "machine-readable output", quiet: bool = True
) -> None:
    """--json and (with ``quiet``) --quiet."""
    p.add_argument("--json", action="store_true", help=json_help)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def _pretrained(value: str | None) -> Any:
    """--pretrained: absent = the default weights; "none" = random init; else a spec."""
    if value is None:
        return True
    return False if value.lower() in ("none", "false", "random") else value


def recipe(args: argparse.Namespace) -> ModelRecipe:
    """The model the flags name: ``--pretrained``, and the fast path in ``--dtype`` unless
    ``--eager`` (or the command has no fast path)."""
    fast = getattr(args, "dtype", None) is not None and not args.eager
    return ModelRecipe(
        args.name,
        pretrained=_pretrained(args.pretrained),
        fast=fast,
        dtype=args.dtype if fast else "float32",
        backend=getattr(args, "backend", "torch"),
        batch_size=getattr(args, "batch_size", default(ModelRecipe, "batch_size")),
        calibration=getattr(args, "calibration", None),
        device=getattr(args, "device", "auto"),
    )


def load(args: argparse.Namespace) -> Any:
    return recipe(args).build()


def emit(args: argparse.Namespace, result: Any, lines: Iterable[str], *, indent: int | None = None) -> int:
    """Print ``result`` as JSON (``to_dict()``, or a list or dict of such) with --json, else the
    text ``lines`` (a list the command made: no callback into it). Returns the exit status, 0."""
    if getattr(args, "json", False):
        print(json.dumps(_plain(result), indent=indent))
    else:
        for line in lines:
            print(line)
    return 0


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_out(out: str, suffix: str, flag: str) -> None:
    """Refuse an output path before any work: a directory, or a missing parent that cannot be made."""
    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"{flag} {out!r} is a directory; name a file, e.g. {path / ('out' + suffix)}")
    parent = path.parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {out!r}: the directory {parent} is not writable")
