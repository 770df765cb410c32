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
from ..util.checks import is_int, is_number
from ..util.integrity import sha256_file
from .config import TrainConfig

__all__ = ["save_checkpoint", "load_checkpoint", "check_resumable", "write_json", "STATE_FILE"]

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


# What each epoch's record holds (loop._end_of_epoch), all numbers.
_RECORD_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s")


def check_resumable(directory: Path, cfg: TrainConfig, img_channels: int) -> tuple[dict, dict[str, str]]:
    """The whole checkpoint checked before any data are loaded: its structure, its files'
    sha256 and its recipe, one metrics record per epoch done (no more epochs than the run has),
    SGD's settings as numbers, and every tensor's name and shape against the network the run
    builds (on the meta device, with the checkpoint's number of classes) and the optimizer's
    parameter order. Returns the state and the file of each part, for :func:`load_checkpoint`."""
    from safetensors import safe_open

    from ..factory import create

    state_path = directory / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot resume: {state_path} is unreadable ({e})") from None
    names = _check_state(state, state_path)

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot resume: {state_path} {problem}; delete the checkpoint directory to start over")

    for name, digest in state["sha256"].items():
        if not (directory / name).is_file() or sha256_file(directory / name) != digest:
            raise bad(f"does not match {directory / name} (it was modified or damaged)")
    if state["recipe"] != cfg.recipe():
        diff = sorted(k for k in cfg.recipe() if state["recipe"].get(k) != cfg.recipe()[k])
        raise CheckpointError(f"cannot resume {directory}: the run's settings differ in {diff}")
    epoch, metrics = state["epoch"], state["metrics"]
    if epoch > cfg.epochs:
        raise bad(f"says {epoch} epochs are done, more than the run's {cfg.epochs}")
    if len(metrics) != epoch or not all(
        isinstance(m, dict) and m.get("epoch") == i + 1 and all(is_number(m.get(k)) for k in _RECORD_KEYS)
        for i, m in enumerate(metrics)
    ):
        raise bad(f"must hold one metrics record (numbers: {', '.join(_RECORD_KEYS)}) per epoch done ({epoch})")
    shapes = {}
    for part, name in names.items():
        try:
            with safe_open(str(directory / name), "pt") as f:
                shapes[part] = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as e:  # a damaged header: safetensors raises its own error types
            raise bad(f"names {name}, which is not readable ({type(e).__name__})") from None
    head = shapes["model"].get("fc.weight")
    if head is None or len(head) != 2:
        raise bad("names a model file without a classifier head")
    with torch.device("meta"):
        model = create(cfg.arch, num_classes=head[0], img_channels=img_channels)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes["model"] != expected:
        wrong = sorted(set(shapes["model"]) ^ set(expected)) or [
            k for k in expected if shapes["model"][k] != expected[k]
        ]
        raise bad(f"names a model file that is not a {cfg.arch}: {', '.join(wrong[:3])} differ")
    _check_optimizer(state["param_groups"], shapes["optimizer"], [tuple(p.shape) for p in model.parameters()], bad)
    return state, names


def _check_optimizer(groups: list, buffers: dict[str, tuple], params: list[tuple], bad: Any) -> None:
    """One SGD group over every parameter in order, its settings numbers, and each momentum
    buffer the shape of its parameter."""
    if len(groups) != 1 or groups[0].get("params") != list(range(len(params))):
        raise bad(f"must hold one parameter group over the parameters 0..{len(params) - 1} in order")
    for key, value in groups[0].items():
        if key != "params" and not (value is None or isinstance(value, bool) or is_number(value)):
            raise bad(f"has {key}={value!r} in its parameter group, where a number or true/false belongs")
    for key, shape in buffers.items():
        i, _, name = key.partition(".")
        if not (i.isdigit() and int(i) < len(params) and name == "momentum_buffer" and shape == params[int(i)]):
            raise bad(f"names an optimizer buffer {key!r} of shape {list(shape)} that no parameter has")


def load_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, checked: tuple[dict, dict[str, str]]
) -> tuple[int, list[dict]]:
    """Restore ``model`` and ``optimizer`` from the checkpoint that :func:`check_resumable`
    checked (``checked`` is what it returned); returns the epochs done and the metrics so far."""
    from safetensors.torch import load_file

    state, names = checked
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
