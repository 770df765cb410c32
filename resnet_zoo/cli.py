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
