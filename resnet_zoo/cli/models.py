"""Commands about models, weights and this machine: ``list``, ``info``, ``cpu``, ``convert``,
``weights list`` and ``weights pin``."""

from __future__ import annotations

import argparse
from typing import Any

from .. import cpu
from ..device import describe_gpus, fast_dtype, gpu_facts, resolve_device
from ..errors import ConfigError
from ..factory import convert_checkpoint
from ..manifest import load_manifest
from ..pretrained.convert import SOURCES
from ..pretrained.pin import pin_weights
from ..registry import get_config, list_models
from ..summary import summarize, weights_table
from .flags import add_output_flags, emit

__all__ = ["add_commands"]


def _cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern, pretrained=args.pretrained)
    return emit(args, names, names)


def _cmd_cpu(args: argparse.Namespace) -> int:
    caps = cpu.cpu_capabilities()

    def lines():
        yield (
            f"cpu          {caps.model_name}"
            + (f" ({caps.family_model})" if caps.family_model else "")
            + f", {caps.cores} cores, {caps.threads} torch threads"
        )
        yield f"torch ISA    {caps.isa} (torch {caps.torch_version}, oneDNN {'yes' if caps.onednn else 'no'})"
        for dtype in ("float32", "bfloat16", "int8"):
            yield f"{dtype:<12} {'fast' if caps.is_fast(dtype) else 'slow':<5} {caps.why(dtype)}"
        yield f"auto dtype   {caps.to_dict()['auto_dtype']} (what --dtype auto and dtype='auto' pick)"

    return emit(args, caps, list(lines()), indent=2)


def _cmd_device(args: argparse.Namespace) -> int:
    """``info --device [SPEC]``: each GPU (or the one SPEC names), the GPU twin of ``cpu``."""
    facts = gpu_facts()
    if args.device != "all":
        where = resolve_device(args.device, what="--device")
        facts = [f for f in facts if where.type == "cuda" and f.index == where.index]
        if where.type == "cpu":
            return _cmd_cpu(args)
    return emit(args, {"gpus": [f.to_dict() for f in facts]}, describe_gpus(facts), indent=2)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.cpu:
        return _cmd_cpu(args)
    if args.device is not None and args.name is None:
        return _cmd_device(args)
    if args.name is None:
        raise ConfigError("info needs a model name (see `resnet-zoo list`), --cpu or --device")
    s, config = summarize(args.name), get_config(args.name)

    def lines():
        yield f"{s.name}: {s.description}"
        yield f"  parameters   {s.params:,}"
        yield f"  GMACs        {s.gmacs:.3f} at {s.input_size}x{s.input_size} (torchvision's 'GFLOPS')"
        yield (
            "  feature maps "
            + ", ".join(f"{c}ch/{r}x" for c, r in s.feature_maps)
            + "  (stem, then each stage: channels/reduction)"
        )
        yield "  config"
        for key, value in config.to_dict().items():
            yield f"    {key:<20} {value}"

        if args.device is not None and args.device != "all":
            where = resolve_device(args.device, what="--device")
            gpu = next((f for f in gpu_facts() if where.type == "cuda" and f.index == where.index), None)
            yield f"  device       {where}" + (f" ({gpu.name}, fast path in {fast_dtype(where)})" if gpu else "")

    return emit(args, {**s.to_dict(), "config": config}, list(lines()), indent=2)


def _cmd_convert(args: argparse.Namespace) -> int:
    model = convert_checkpoint(args.src, args.arch, args.out, source=args.source, num_classes=args.num_classes)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.out}: {args.arch}, {params:,} parameters, {model.config.num_classes} classes "
        f"(load with resnet_zoo.create({args.arch!r}, pretrained={str(args.out)!r}))"
    )
    return 0


def _cmd_weights_list(args: argparse.Namespace) -> int:
    return emit(args, load_manifest(), [weights_table("text").rstrip("\n")], indent=2)


def _cmd_weights_pin(args: argparse.Namespace) -> int:
    for name, pin in pin_weights(args.tags or None).items():
        print(f"{name}: revision {pin['revision']} sha256 {pin['sha256']} size {pin['size']}")
    return 0


def add_commands(sub: Any, parser_class: type) -> None:
    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with weights")
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="config, parameters, GMACs and feature maps of a model")
    p.add_argument("name", nargs="?")
    p.add_argument("--cpu", action="store_true", help="the same as the `cpu` command")
    p.add_argument(
        "--device",
        nargs="?",
        const="all",
        default=None,
        metavar="DEVICE",
        help="without a model: each GPU (name, compute capability, memory, fast dtypes), or the one "
        "DEVICE names (cuda:N); with a model: where it would run",
    )
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("cpu", help="this CPU: torch's ISA, which dtypes are fast, what dtype 'auto' picks")
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_cmd_cpu)

    p = sub.add_parser("convert", help="turn a .pth/.safetensors checkpoint into a save_pretrained directory")
    p.add_argument("src", help="checkpoint file (.pth/.pt/.bin read with weights_only=True, or .safetensors)")
    p.add_argument("--arch", required=True, help="registered architecture, e.g. resnet50")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--source", default="auto", choices=SOURCES, help="key layout (default: %(default)s, detected)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the head (default: the checkpoint's)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("weights", help="the published weights manifest")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION", parser_class=parser_class)
    w = wsub.add_parser("list", help="published weights with accuracy and preprocessing")
    add_output_flags(w, quiet=False)
    w.set_defaults(func=_cmd_weights_list)
    w = wsub.add_parser("pin", help="record the Hub's current commit, sha256 and size in the manifest")
    w.add_argument("tags", nargs="*", help="arch.tag names (default: all)")
    w.set_defaults(func=_cmd_weights_pin)
