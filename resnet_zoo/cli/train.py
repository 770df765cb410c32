"""The ``train`` command: one flag per :class:`~resnet_zoo.train.TrainConfig` field."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields
from typing import Any

from ..train import TrainConfig, command_line, train
from ..train.config import NOT_FLAGS
from ..util.dist import rank

__all__ = ["add_commands"]


def _cmd_train(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in NOT_FLAGS}
    cfg = TrainConfig(arch=args.name, progress=not args.quiet, command=command_line(), **values)
    final = train(cfg)
    if rank() == 0:
        print(
            f"wrote {cfg.out}: held-out accuracy {final.get('val_acc', float('nan')):.4f} after "
            f"{final.get('epoch')} epochs (load with resnet_zoo.create({args.name!r}, "
            f"pretrained={cfg.out!r}))"
        )
    return 0


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with the field's type, default, help and choices."""
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in NOT_FLAGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        args = typing.get_args(kind)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), kind) if optional else kind
        extra = {k: v for k, v in f.metadata.items() if k != "help"}
        required = f.default is MISSING and f.default_factory is MISSING
        default = None if required else f.default
        if base is bool and optional:  # --flip / --no-flip, absent = None (the field decides)
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata.get("help"))
        elif base is bool:
            p.add_argument(flag, action="store_true", help=f.metadata.get("help"))
        elif typing.get_origin(base) is tuple:
            p.add_argument(
                flag, type=typing.get_args(base)[0], nargs="+", default=default, help=f.metadata.get("help"), **extra
            )
        else:
            p.add_argument(flag, type=base, default=default, required=required, help=f.metadata.get("help"), **extra)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (the paper's CIFAR recipe by default); torchrun-ready")
    p.add_argument("name", help="architecture, e.g. cifar_resnet20")
    _add_train_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
