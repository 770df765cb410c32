"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for the rest.

Each file is written to a temporary name and renamed; ``state.json``, which records the other
files' sha256, is written last, so a checkpoint is complete exactly when its digests match.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write, write_text_atomic
from ..errors import CheckpointError
from ..integrity import sha256_file
from ..config import is_int
from .config import TrainConfig

__all__ = ["save_checkpoint", "load_checkpoint", "write_json"]


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, metrics: list[dict], cfg: TrainConfig) -> None:
    from safetensors.torch import save_file

    opt = optimizer.state_dict()
    buffers = {f"{i}.{k}": v for i, state in opt["state"].items() for k, v in state.items()
               if isinstance(v, torch.Tensor)}
    files = {"model.safetensors": {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
             "optimizer.safetensors": {k: v.contiguous().cpu() for k, v in buffers.items()}}
    digests = {}
    for name, tensors in files.items():
        with atomic_write(directory / name) as tmp:
            save_file(tensors, str(tmp))
            digests[name] = sha256_file(tmp)
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt["param_groups"]]
    # Written last: a state.json whose digests match the files marks a complete checkpoint.
    write_json(directory / "state.json", {
        "epoch": epoch, "recipe": cfg.recipe(), "sha256": digests, "param_groups": groups,
        "metrics": metrics,
    })


def _check_state(state: Any, path: Path) -> None:
    """The structure save_checkpoint writes; anything else is a damaged or foreign checkpoint."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"cannot resume: {path} is damaged or not a resnet_zoo checkpoint ({what}); "
                               "delete the checkpoint directory to start over")

    if not isinstance(state, dict):
        raise bad("not a JSON object")
    for key in ("epoch", "recipe", "sha256", "param_groups", "metrics"):
        if key not in state:
            raise bad(f"no {key!r}")
    if not is_int(state["epoch"], 0):
        raise bad(f"epoch {state['epoch']!r} is not a count")
    digests = state["sha256"]
    if not isinstance(digests, dict) or set(digests) != {"model.safetensors", "optimizer.safetensors"} or \
            not all(isinstance(v, str) and len(v) == 64 for v in digests.values()):
        raise bad("it must record the sha256 of model.safetensors and optimizer.safetensors")
    if not isinstance(state["recipe"], dict) or not isinstance(state["metrics"], list):
        raise bad("recipe or metrics malformed")
    groups = state["param_groups"]
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise bad("param_groups malformed")


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    cfg: TrainConfig) -> tuple[int, list[dict]]:
    """Restore ``model`` and ``optimizer``; returns the epochs done and the metrics so far."""
    from safetensors.torch import load_file

    state_path = directory / "state.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot resume: {state_path} is unreadable ({e})") from None
    _check_state(state, state_path)
    for name, digest in state["sha256"].items():
        path = directory / name
        if not path.is_file() or sha256_file(path) != digest:
            raise CheckpointError(
                f"cannot resume: {path} does not match {state_path} (a write was interrupted); "
                "delete the checkpoint directory to start over"
            )
    if state["recipe"] != cfg.recipe():
        diff = sorted(k for k in cfg.recipe() if state["recipe"].get(k) != cfg.recipe()[k])
        raise CheckpointError(f"cannot resume {directory}: the run's settings differ in {diff}")
    try:
        model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
        buffers = load_file(str(directory / "optimizer.safetensors"))
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in buffers.items():
            i, name = key.split(".", 1)
            opt_state.setdefault(int(i), {})[name] = value
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot resume from {directory}: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}; delete it to start over") from None
    return int(state["epoch"]), list(state["metrics"])
