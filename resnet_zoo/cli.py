"""The ``resnet-zoo`` command: parse, call the library, print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

from . import __version__
from .errors import ConfigError, ResNetZooError

__all__ = ["main"]


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import list_models

    for name in list_models(args.pattern, pretrained=args.pretrained):
        print(name)
    return 0


def _cmd_cpu(args: argparse.Namespace) -> int:
    from .cpu import cpu_capabilities

    caps = cpu_capabilities()
    if args.json:
        print(json.dumps(caps.to_dict(), indent=2))
        return 0
    print(f"cpu          {caps.model_name}" + (f" ({caps.family_model})" if caps.family_model else "")
          + f", {caps.cores} cores, {caps.threads} torch threads")
    print(f"torch ISA    {caps.isa} (torch {caps.torch_version}, oneDNN "
          f"{'yes' if caps.onednn else 'no'})")
    for dtype in ("float32", "bfloat16", "int8"):
        print(f"{dtype:<12} {'fast' if caps.is_fast(dtype) else 'slow':<5} {caps.why(dtype)}")
    print(f"auto dtype   {caps.to_dict()['auto_dtype']} (what --dtype auto and dtype='auto' pick)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .registry import get_config
    from .summary import summarize

    if args.cpu:
        return _cmd_cpu(args)
    if args.name is None:
        raise ConfigError("info needs a model name (see `resnet-zoo list`), or --cpu")
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
        print(json.dumps({name: {"hf_hub_id": s.hf_hub_id, "path": s.path, "top1": s.top1,
                                 "top1_source": s.top1_source, "evaluations": list(s.evaluations),
                                 "license": s.license, "default": s.default, "pinned": s.pinned,
                                 "preprocessing": s.preprocessing.to_dict()}
                          for name, s in specs.items()}, indent=2))
        return 0
    print(f"{'weights':<28} {'':<8} {'top-1':<7} {'ours':<12} {'licence':<13} {'where':<40} preprocessing")
    for name, s in specs.items():
        p = s.preprocessing
        top1 = f"{s.top1:.2f}" if s.top1 is not None else "-"
        ours = "/".join(f"{e['top1']:.2f}" for e in s.evaluations) or "-"
        where = s.hf_hub_id or f"shipped: weights/{s.path}"
        print(f"{name:<28} {'default' if s.default else '':<8} {top1:<7} {ours:<12} {s.license:<13} "
              f"{where:<40} {p.input_size}px crop {p.crop_pct} {p.interpolation}"
              f"{'' if s.pinned else '  (unpinned)'}")
    print("top-1: the publisher's figure; ours: measured by this project (`weights list --json` "
          "names the data of each)")
    return 0


def _cmd_weights_pin(args: argparse.Namespace) -> int:
    from .pretrained import pin_weights

    for name, pin in pin_weights(args.tags or None).items():
        print(f"{name}: revision {pin['revision']} sha256 {pin['sha256']} size {pin['size']}")
    return 0


def _pretrained_arg(value: str | None):
    """--pretrained: absent = the default weights; "none" = random init; else a spec."""
    if value is None:
        return True
    return False if value.lower() in ("none", "false", "random") else value


def _load(args: argparse.Namespace):
    """The model, on the fast path in ``--dtype`` unless ``--eager`` (or the command has no fast path)."""
    from .factory import create

    model = create(args.name, pretrained=_pretrained_arg(args.pretrained)).eval()
    if getattr(args, "dtype", None) is None or args.eager:
        return model
    from .inference import optimize_for_inference

    fast = optimize_for_inference(model, dtype=args.dtype)
    logging.getLogger(__name__).info("fast path in %s", str(fast.dtype).replace("torch.", ""))
    return fast


def _cmd_predict(args: argparse.Namespace) -> int:
    from .inference import predict

    model = _load(args)
    preds = predict(model, args.images, top=args.top, batch_size=args.batch_size,
                    num_workers=args.workers, skip_bad=args.skip_bad)
    if args.json:
        print(json.dumps([p.to_dict() for p in preds]))
        return 0
    for p in preds:
        if args.top == 1:
            c, label, score = p.topk[0]
            print(f"{p.path}: {label} (class {c}, p={score:.4f})")
            continue
        print(p.path)
        for c, label, score in p.topk:
            print(f"  {score:7.4f}  {label} ({c})")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safetensors.torch import save_file

    from .inference import extract_features

    if not args.out.endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file, got {args.out!r}")
    model = _load(args)
    feats, paths = extract_features(model, args.inputs, batch_size=args.batch_size,
                                    num_workers=args.workers, skip_bad=args.skip_bad,
                                    progress=not args.quiet)
    info = getattr(model, "pretrained_cfg", None)
    metadata = {
        "paths": json.dumps([str(p) for p in paths]),
        "model": args.name,
        "weights": (info.name or info.source) if info is not None else "random init",
        "shape": json.dumps(list(feats.shape)),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    save_file({"features": feats.contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(out)
    print(f"wrote {out}: {feats.shape[0]} images x {feats.shape[1]} features")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import iter_bench, machine_description

    dtypes = None if args.dtype == "all" else (args.dtype,)  # None: every dtype fast here
    rows = iter_bench(args.names, batch_size=args.batch_size, dtypes=dtypes,
                      input_size=args.input_size, iters=args.iters, repeats=args.repeats,
                      with_torchvision=not args.no_torchvision, progress=not args.quiet)
    machine = machine_description()
    results = []
    if not args.json:
        print(f"machine: {machine}")
        print(f"{'model':<18} {'path':<24} {'images/s':>9} {'vs tv':>7} {'GFLOP/s':>9} {'of peak':>8}",
              flush=True)
    for model_rows in rows:  # each model's rows as soon as it is measured
        results.extend(model_rows)
        if args.json:
            continue
        for r in model_rows:
            ratio = f"{r.ratio_vs_torchvision:.2f}x" if r.ratio_vs_torchvision else "-"
            peak = f"{100 * r.fraction_of_gemm_peak:.0f}%" if r.fraction_of_gemm_peak else "-"
            print(f"{r.model:<18} {r.path:<24} {r.images_per_s:9.2f} {ratio:>7} "
                  f"{r.gflops_per_s:9.1f} {peak:>8}", flush=True)
    if args.json:
        print(json.dumps({"machine": machine, "results": [r.to_dict() for r in results]}, indent=2))
    if args.plot:
        from .plot import bar_chart

        bar_chart([f"{r.model} {r.path}" for r in results], [r.images_per_s for r in results],
                  args.plot, title=f"images/s, batch {args.batch_size} ({machine})")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model
    from .registry import get_entry

    model = _load(args)
    size = args.input_size or get_entry(args.name).input_size
    out = export_model(model, args.out, format=args.format, input_size=size, opset=args.opset)
    print(f"wrote {out} ({args.format}, input [N, {model.config.img_channels}, {size}, {size}])")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, command_line, train

    cfg = TrainConfig(
        arch=args.name, dataset=args.dataset, out=args.out, data=args.data, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, milestones=tuple(args.milestones), gamma=args.gamma,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs, nesterov=args.nesterov,
        precision=args.precision,
        pad=args.pad, flip=args.flip, invert=args.invert, seed=args.seed, workers=args.workers,
        val_fraction=args.val_fraction, input_size=args.input_size, pretrained=args.pretrained,
        resume=args.resume, limit_train=args.limit_train, label_smoothing=args.label_smoothing,
        progress=not args.quiet, command=command_line(),
    )
    final = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"wrote {args.out}: held-out accuracy {final.get('val_acc', float('nan')):.4f} after "
              f"{final.get('epoch')} epochs (load with resnet_zoo.create({args.name!r}, "
              f"pretrained={args.out!r}))")
    return 0


def _add_model_args(p: argparse.ArgumentParser, *, fast: bool = True) -> None:
    p.add_argument("--pretrained", default=None, metavar="SPEC",
                   help="weights: a tag, hf-hub:owner/repo, a .safetensors file or a directory; "
                        "'none' for random init (default: the architecture's default weights)")
    if fast:
        p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                       help="compute dtype of the fast path (optimize_for_inference); auto: the "
                            "fastest this CPU supports, see `resnet-zoo info --cpu` (default: auto)")
        p.add_argument("--eager", action="store_true",
                       help="run the plain float32 model instead of the fast path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-zoo", description="ResNets of He et al. 2016: list, inspect, run."
    )
    parser.add_argument("--version", action="version", version=f"resnet_zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag names with weights")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="config, parameters, GMACs and feature maps of a model; "
                                    "or --cpu: what this CPU computes fast")
    p.add_argument("name", nargs="?")
    p.add_argument("--cpu", action="store_true",
                   help="this CPU: torch's ISA, which dtypes are fast, what dtype 'auto' picks")
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

    p = sub.add_parser("predict", help="top-k classes of images")
    p.add_argument("name", help="model name, e.g. resnet50 or resnet50.a1_in1k")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--json", action="store_true", help="one JSON list on stdout")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (logged)")
    _add_model_args(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("features", help="pooled features of images into a .safetensors file")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+", help="image files or directories (searched recursively)")
    p.add_argument("--out", required=True, help="FILE.safetensors ('features' [N, C]; paths in metadata)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (logged)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("bench", help="images/s: resnet_zoo eager, fast path, torchvision")
    p.add_argument("names", nargs="+")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", choices=("all", "auto", "float32", "bfloat16"), default="all",
                   help="fast-path dtypes to time (default all: every dtype this CPU runs fast)")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--iters", type=int, default=2, help="batches timed per round (default 2)")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds alternating between the paths; the best is kept (default 3)")
    p.add_argument("--no-torchvision", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("export", help="ONNX or TorchScript file of a model")
    p.add_argument("name")
    p.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--opset", type=int, default=None)
    _add_model_args(p, fast=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("train", help="train a model (the paper's CIFAR recipe by default); torchrun-ready")
    p.add_argument("name", help="architecture, e.g. cifar_resnet20")
    p.add_argument("--dataset", required=True, choices=("digits", "cifar10", "cifar100", "folder"))
    p.add_argument("--data", help="directory of the CIFAR binary files or of class folders")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--out", required=True, help="output directory (checkpoints, metrics, final model)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--milestones", type=float, nargs="+", default=[0.5, 0.75],
                   help="fractions of training where the lr is multiplied by --gamma")
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--schedule", choices=("step", "cosine"), default="step",
                   help="step: the paper's drops at --milestones; cosine: cosine decay to 0")
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear learning-rate warm-up from lr/10, in epochs (default 0)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="auto: bfloat16 autocast where this CPU has fast bf16 (AVX512-BF16/AMX), "
                        "else float32 (see `resnet-zoo info --cpu`)")
    p.add_argument("--pad", type=int, default=4, help="random-crop padding in pixels (0: no crop)")
    p.add_argument("--flip", dest="flip", action="store_true", default=None)
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--invert", type=float, default=0.0, metavar="P",
                   help="invert a share P of the training images (both polarities, e.g. digits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="held-out fraction where the dataset has no test split")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--pretrained", default=None, help="fine-tune from these weights")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--limit-train", type=int, default=None, help="use only N training images")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

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
    logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING,
                        format="resnet-zoo: %(levelname)s: %(message)s")
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
    except Exception as e:  # anything else: still one line, the traceback behind --debug
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"resnet-zoo: error: {type(e).__name__}: {first} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
