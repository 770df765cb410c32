"""The ``resnet-zoo`` command: parse, call the library, print."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from . import __version__
from .errors import ResNetZooError

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models

    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(name)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .registry import get_config
    from .summary import summarize

    s = summarize(args.name)
    config = get_config(args.name)
    if args.json:
        print(json.dumps({
            "name": s.name,
            "description": s.description,
            "params": s.params,
            "macs": s.macs,
            "input_size": s.input_size,
            "feature_maps": [{"channels": c, "reduction": r} for c, r in s.feature_maps],
            "config": config.to_dict(),
        }, indent=2))
        return 0
    print(f"{s.name}: {s.description}")
    print(f"  parameters   {s.params:,}")
    print(f"  GMACs        {s.gmacs:.3f} at {s.input_size}x{s.input_size} (torchvision's 'GFLOPS')")
    print("  feature maps " + ", ".join(f"{c}ch/{r}x" for c, r in s.feature_maps)
          + "  (stem, then each stage: channels/reduction)")
    print("  config")
    for key, value in config.to_dict().items():
        print(f"    {key:<20} {value}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .pretrained import convert_checkpoint

    model = convert_checkpoint(args.src, args.arch, args.out, source=args.source,
                               num_classes=args.num_classes)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.arch}, {params:,} parameters, {model.config.num_classes} classes "
          f"(load with resnet_zoo.create({args.arch!r}, pretrained={str(args.out)!r}))")
    return 0


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from .manifest import load_manifest

    specs = load_manifest()
    if args.json:
        print(json.dumps({name: {"hf_hub_id": s.hf_hub_id, "top1": s.top1, "default": s.default,
                                 "pinned": s.pinned, "preprocessing": s.preprocessing.to_dict()}
                          for name, s in specs.items()}, indent=2))
        return 0
    for name, s in specs.items():
        p = s.preprocessing
        top1 = f"{s.top1:.3f}" if s.top1 is not None else "-"
        print(f"{name:<28} {'default' if s.default else '':<8} top-1 {top1:<7} {s.hf_hub_id:<32} "
              f"{p.input_size}px crop {p.crop_pct} {p.interpolation}{'' if s.pinned else '  (unpinned)'}")
    return 0


def _cmd_weights_pin(args: argparse.Namespace) -> int:
    from .pretrained import pin_weights

    for name, pin in pin_weights(args.tags or None).items():
        print(f"{name}: revision {pin['revision']} sha256 {pin['sha256']} size {pin['size']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-zoo", description="ResNets of He et al. 2016: list, inspect, run."
    )
    parser.add_argument("--version", action="version", version=f"resnet_zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="config, parameters, GMACs and feature maps of a model")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="turn a .pth/.safetensors checkpoint into a save_pretrained directory")
    p.add_argument("src", help="checkpoint file (.pth/.pt/.bin read with weights_only=True, or .safetensors)")
    p.add_argument("--arch", required=True, help="registered architecture, e.g. resnet50")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--source", default="auto",
                   help="key layout: auto, torchvision, timm, transformers, labml, cifar, resnet_zoo")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of the head (default: the checkpoint's)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("weights", help="the published weights manifest")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    w = wsub.add_parser("list", help="published weights with accuracy and preprocessing")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=_cmd_weights_list)
    w = wsub.add_parser("pin", help="record the Hub's current commit, sha256 and size in the manifest")
    w.add_argument("tags", nargs="*", help="arch.tag names (default: all)")
    w.set_defaults(func=_cmd_weights_pin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ResNetZooError as e:
        if args.debug:
            raise
        print(f"resnet-zoo: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("resnet-zoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
