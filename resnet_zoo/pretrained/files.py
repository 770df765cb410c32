"""Reading weights files safely: safetensors only for loading, ``torch.load(weights_only=True)``
for converting a ``.pth``; headers are checked before anything is parsed."""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..util.integrity import not_a_regular_file, printable

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_safetensors", "read_checkpoint"]

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1  # of config.json, written by save_pretrained
# A header this large would hold ~millions of tensors; the largest ResNet needs ~100 KB.
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 20_000


def _sniff(head: bytes) -> str | None:
    """Name what a file that is not safetensors really is, from its first bytes."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (torch.save's format, with a pickle inside)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle (legacy torch.save format)"
    if head.startswith(b"version https://git-lfs"):
        return "a git-lfs pointer file (the real file was not fetched: run 'git lfs pull')"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        return "an HTML/XML page (an error page saved in place of the file?)"
    if stripped.startswith((b"{", b"[")):
        return "a JSON document"
    return None


def _check_header(path: Path, size: int, head: bytes) -> None:
    if size < 8:
        raise CheckpointError(f"{path} is {size} bytes: too short to be a safetensors file (truncated?)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > size - 8:
        label = _sniff(head)
        if label:
            raise CheckpointError(f"{path} is not a safetensors file: it looks like {label}")
        raise CheckpointError(
            f"{path}: safetensors header claims {n} bytes but the file has only {size - 8} after "
            "the length field: truncated or not a safetensors file"
        )
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: safetensors header of {n} bytes exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(no ResNet needs more than ~100 KB): refusing to parse it"
        )
    if head[8:9] != b"{":
        label = _sniff(head)
        raise CheckpointError(
            f"{path} is not a safetensors file"
            + (f": it looks like {label}" if label else " (its header is not a JSON object)")
        )


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read every tensor of a .safetensors file (never a pickle); returns (tensors, metadata)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if problem := not_a_regular_file(path):
        raise CheckpointError(f"weights file {path} {problem}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)  # enough to recognise what a non-safetensors file is
        _check_header(path, size, head)
        (n,) = struct.unpack("<Q", head[:8])
        f.seek(8)
        header_bytes = f.read(n)
    declared = header_bytes.count(b'"data_offsets"')  # counted before any parsing
    if declared > MAX_TENSORS:
        raise CheckpointError(
            f"{path}: header declares {declared} tensors, more than the {MAX_TENSORS} limit "
            "(a ResNet has at most ~1,300)"
        )
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    if len(header) - ("__metadata__" in header) > MAX_TENSORS:
        raise CheckpointError(f"{path}: header declares {len(header)} entries, more than the {MAX_TENSORS} limit")
    try:
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a valid safetensors file: {e}") from None
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read the tensors: {e}") from None
    return tensors, metadata


def _unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint ({'state_dict': ...}, {'model': ...}, ...)."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "module", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                log.info("%s: using the checkpoint's %r entry", path, key)
                return inner
    found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path} holds no state dict of tensors (found: {found}); save model.state_dict()")


def _check_zip_entries(path: Path) -> None:
    """torch.save stores its zip entries uncompressed; a compressed entry (a 1.5 MB file that
    inflates to 512 MB) is refused before anything is inflated."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return  # torch.save's legacy (non-zip) format: torch.load reads it as it is
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            for entry in archive.infolist():
                if entry.compress_type != zipfile.ZIP_STORED or entry.file_size > size:
                    raise CheckpointError(
                        f"{path}: zip entry {printable(entry.filename)!r} is compressed ({entry.compress_size:,} bytes "
                        f"that inflate to {entry.file_size:,}); torch.save never compresses its entries, so the "
                        "file is refused before anything is inflated"
                    )
    except (OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a readable torch.save archive ({e})") from None


def _check_dense(state_dict: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Weights are dense tensors with data: a sparse, quantized or meta-device one is refused
    by name (torch would fail later with a raw RuntimeError)."""
    for key, tensor in state_dict.items():
        kind = (
            "meta-device (it has no data)"
            if tensor.is_meta
            else f"{tensor.layout} (not dense)"
            if tensor.layout != torch.strided
            else "quantized"
            if tensor.is_quantized
            else None
        )
        if kind is not None:
            raise CheckpointError(
                f"{path}: {printable(key)!r} is a {kind} tensor; weights are dense tensors with data "
                "(save the model's state_dict() after loading it, or .to_dense() it)"
            )
    return state_dict


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch.save file read with ``weights_only=True``.

    A pickle that needs anything beyond tensors and plain containers is refused; there is no
    retry without ``weights_only``.
    """
    path = Path(path)
    if problem := not_a_regular_file(path):
        raise CheckpointError(f"checkpoint {path} {problem}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)[0]
    _check_zip_entries(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError for bad zips, EOFError, ...
        raise CheckpointError(
            f"{path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}). Only plain state dicts are "
            "converted; code inside a pickle is never run"
        ) from None
    return _check_dense(_unwrap_checkpoint(obj, path), path)
