"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

A checkpoint is one atomic unit. Epoch ``E`` writes ``model-EEEEE.safetensors`` and
``optimizer-EEEEE.safetensors`` beside the previous epoch's files, then ``state.json``, which
names the two files with their sha256 and is replaced atomically; only then are the previous
epoch's files deleted. A process killed at any moment of a save leaves a ``state.json`` whose
files are all there: the previous epoch's or the new one's (the torch.distributed.checkpoint
rule: the metadata is written last and commits the step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..util.atomic import atomic_write, remove_partials, write_text_atomic
from ..util.checks import is_int
from ..util.integrity import sha256_file
from .config import TrainConfig

__all__ = ["save_checkpoint", "load_checkpoint", "write_json", "STATE_FILE"]

STATE_FILE = "state.json"
_PARTS = ("model", "optimizer")
_FILE = re.compile(r"^(model|optimizer)-(\d{5,})\.safetensors$")


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _file_name(part: str, epoch: int) -> str:
    return f"{part}-{epoch:05d}.safetensors"


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    metrics: list[dict],
    cfg: TrainConfig,
) -> None:
    """Write the checkpoint after ``epoch`` epochs as one unit (see the module docstring)."""
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    buffers = {
        f"{i}.{k}": v for i, state in opt["state"].items() for k, v in state.items() if isinstance(v, torch.Tensor)
    }
    tensors = {
        "model": {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
        "optimizer": {k: v.contiguous().cpu() for k, v in buffers.items()},
    }
    digests = {}
    for part in _PARTS:
        name = _file_name(part, epoch)
        with atomic_write(directory / name) as tmp:
            save_file(tensors[part], str(tmp))
            digests[name] = sha256_file(tmp)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    # The commit point: until state.json is replaced, it names the previous epoch's files.
    write_json(
        directory / STATE_FILE,
        {
            "epoch": epoch,
            "recipe": cfg.recipe(),
            "sha256": digests,
            "param_groups": groups,
            "metrics": metrics,
        },
    )
    for path in directory.iterdir():  # the previous epoch's files, and those of a killed save
        if _FILE.match(path.name) and path.name not in digests:
            path.unlink(missing_ok=True)
    remove_partials(directory)


def _check_state(state: Any, path: Path) -> dict[str, str]:
    """The structure save_checkpoint writes, or CheckpointError: a damaged or foreign checkpoint.
    Returns the part ("model", "optimizer") -> file name it names."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(
            f"cannot resume: {path} is damaged or not a resnet_zoo checkpoint ({problem}); "
            "delete the checkpoint directory to start over"
        )

    if not isinstance(state, dict):
        raise bad("not a JSON object")
    for key in ("epoch", "recipe", "sha256", "param_groups", "metrics"):
        if key not in state:
            raise bad(f"no {key!r}")
    if not is_int(state["epoch"], 0):
        raise bad(f"epoch {state['epoch']!r} is not a count")
    digests = state["sha256"]
    names = {}
    if isinstance(digests, dict):
        for name, digest in digests.items():
            match = _FILE.match(name) if isinstance(name, str) else None
            if match and int(match.group(2)) == state["epoch"] and isinstance(digest, str) and len(digest) == 64:
                names[match.group(1)] = name
    if len(names) != len(_PARTS) or len(digests) != len(_PARTS):
        raise bad(
            f"it must record the sha256 of {_file_name('model', state['epoch'])} and "
            f"{_file_name('optimizer', state['epoch'])}"
        )
    if not isinstance(state["recipe"], dict) or not isinstance(state["metrics"], list):
        raise bad("recipe or metrics malformed")
    groups = state["param_groups"]
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise bad("param_groups malformed")
    return names


def load_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> tuple[int, list[dict]]:
    """Restore ``model`` and ``optimizer``; returns the epochs done and the metrics so far."""
    from safetensors.torch import load_file

    state_path = directory / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot resume: {state_path} is unreadable ({e})") from None
    names = _check_state(state, state_path)
    for name, digest in state["sha256"].items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            raise CheckpointError(
                f"cannot resume: {path} does not match {state_path} (it was modified or damaged); "
                "delete the checkpoint directory to start over"
            )
    if state["recipe"] != cfg.recipe():
        diff = sorted(k for k in cfg.recipe() if state["recipe"].get(k) != cfg.recipe()[k])
        raise CheckpointError(f"cannot resume {directory}: the run's settings differ in {diff}")
    try:
        model.load_state_dict(load_file(str(directory / names["model"])), strict=True)
        buffers = load_file(str(directory / names["optimizer"]))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in buffers.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"cannot resume from {directory}: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}; delete it to start over"
        ) from None
    return int(state["epoch"]), list(state["metrics"])
