"""The ``resnet-zoo`` command: parse, call the library, print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import MISSING, fields
from typing import Sequence

from ._version import __version__
from .config import check_positive_int
from .errors import ConfigError, ResNetZooError
from .features import write_feature_set, write_features
from .features.sets import FILE_FORMATS, STORE_DTYPES
from .integrity import printable
from .recipe import BACKEND_CHOICES, DTYPES, ModelRecipe

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
    from .factory import convert_checkpoint

    model = convert_checkpoint(args.src, args.arch, args.out, source=args.source,
                               num_classes=args.num_classes)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {args.arch}, {params:,} parameters, {model.config.num_classes} classes "
          f"(load with resnet_zoo.create({args.arch!r}, pretrained={str(args.out)!r}))")
    return 0


def _cmd_weights_list(args: argparse.Namespace) -> int:
    from .manifest import load_manifest
    from .summary import weights_table

    if args.json:
        print(json.dumps({name: {"hf_hub_id": s.hf_hub_id, "path": s.path, "top1": s.top1,
                                 "top1_source": s.top1_source, "evaluations": list(s.evaluations),
                                 "license": s.license, "default": s.default, "pinned": s.pinned,
                                 "preprocessing": s.preprocessing.to_dict()}
                          for name, s in load_manifest().items()}, indent=2))
        return 0
    print(weights_table("text"), end="")
    return 0


def _cmd_weights_pin(args: argparse.Namespace) -> int:
    from .pretrained.pin import pin_weights

    for name, pin in pin_weights(args.tags or None).items():
        print(f"{name}: revision {pin['revision']} sha256 {pin['sha256']} size {pin['size']}")
    return 0


def _pretrained_arg(value: str | None):
    """--pretrained: absent = the default weights; "none" = random init; else a spec."""
    if value is None:
        return True
    return False if value.lower() in ("none", "false", "random") else value


def _recipe(args: argparse.Namespace):
    """The model the flags name: ``--pretrained``, and the fast path in ``--dtype`` unless
    ``--eager`` (or the command has no fast path)."""
    fast = getattr(args, "dtype", None) is not None and not args.eager
    return ModelRecipe(args.name, pretrained=_pretrained_arg(args.pretrained), fast=fast,
                       dtype=args.dtype if fast else "float32", backend=getattr(args, "backend", "torch"),
                       batch_size=getattr(args, "batch_size", 64), calibration=getattr(args, "calibration", None))


def _load(args: argparse.Namespace):
    return _recipe(args).build()


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
            print(f"{printable(p.path)}: {printable(label)} (class {c}, p={score:.4f})")
            continue
        print(printable(p.path))
        for c, label, score in p.topk:
            print(f"  {score:7.4f}  {printable(label)} ({c})")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out)
    if out.suffix and out.suffix != ".safetensors" and not out.is_dir():
        raise ConfigError(f"--out must be a directory (a feature set) or a .safetensors file, got {args.out!r}"
                          + ("; for parquet, name a directory and pass --format parquet" if out.suffix == ".parquet"
                             else ""))
    ray_flags = [f for f, given in (("--address", args.address), ("--num-workers", args.num_workers),
                                    ("--cpus-per-worker", args.cpus_per_worker),
                                    ("--gpus-per-worker", args.gpus_per_worker)) if given is not None]
    if args.engine != "ray" and ray_flags:
        raise ConfigError(f"{', '.join(ray_flags)} go with --engine ray")
    if args.out.endswith(".safetensors"):  # one file: small jobs
        if args.engine == "ray":
            raise ConfigError("--engine ray writes a feature set: --out must name a directory")
        written = write_features(_load(args), args.inputs, args.out, batch_size=args.batch_size,
                                 num_workers=args.workers, skip_bad=args.skip_bad,
                                 progress=not args.quiet, model_name=args.name)
        n, c = written.features.shape
        if args.json:
            print(json.dumps({"file": str(written.path), "images": n, "features": c}))
        else:
            print(f"wrote {written.path}: {n} images x {c} features")
        return 0
    options = dict(shard_size=args.shard_size, batch_size=args.batch_size, store_dtype=args.store_dtype,
                   file_format=args.file_format, skip_bad=args.skip_bad, overwrite=args.overwrite,
                   progress=not args.quiet)
    if args.engine == "ray":
        from .features.ray_engine import write_feature_set_ray

        summary = write_feature_set_ray(_recipe(args), args.inputs, args.out, address=args.address,
                                        num_workers=args.num_workers,
                                        cpus_per_worker=args.cpus_per_worker if args.cpus_per_worker is not None else 1.0,
                                        gpus_per_worker=args.gpus_per_worker or 0.0, **options)
    else:
        summary = write_feature_set(_load(args), args.inputs, args.out, num_workers=args.workers,
                                    model_name=args.name, **options)
    if summary.rank != 0:
        return 0
    if args.json:
        print(json.dumps(summary.to_dict()))
    else:
        print(f"wrote {summary.directory}: {summary.images} images in {summary.shards} shards "
              f"({summary.written_shards} written, {summary.skipped_shards} already complete); "
              "read it with resnet_zoo.features.read_feature_set")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import iter_bench, machine_description

    if args.input_size is not None:
        check_positive_int("--input-size", args.input_size)
    if args.plot:
        _check_out(args.plot, ".png", "--plot")
    dtypes = None if args.dtype == "all" else (args.dtype,)  # None: every dtype fast here
    rows = iter_bench(args.names, batch_size=args.batch_size, dtypes=dtypes,
                      input_size=args.input_size, iters=args.iters, repeats=args.repeats,
                      with_torchvision=not args.no_torchvision, progress=not args.quiet,
                      peers=args.peers, int8=args.int8)
    machine = machine_description()
    results = []
    if not args.json:
        print(f"machine: {machine}")
        print(f"{'model':<18} {'path':<30} {'images/s':>9} {'vs tv':>7} {'GFLOP/s':>9} {'of peak':>8}  note",
              flush=True)
    for model_rows in rows:  # each model's rows as soon as it is measured
        results.extend(model_rows)
        if args.json:
            continue
        for r in model_rows:
            ratio = f"{r.ratio_vs_torchvision:.2f}x" if r.ratio_vs_torchvision else "-"
            peak = f"{100 * r.fraction_of_gemm_peak:.0f}%" if r.fraction_of_gemm_peak else "-"
            print(f"{r.model:<18} {r.path:<30} {r.images_per_s:9.2f} {ratio:>7} "
                  f"{r.gflops_per_s:9.1f} {peak:>8}  {r.note}".rstrip(), flush=True)
    if args.json:
        print(json.dumps({"machine": machine, "results": [r.to_dict() for r in results]}, indent=2))
    if args.plot:
        from .plot import bar_chart

        bar_chart([f"{r.model} {r.path}" for r in results], [r.images_per_s for r in results],
                  args.plot, title=f"images/s, batch {args.batch_size} ({machine})")
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _check_out(out: str, suffix: str, flag: str) -> None:
    """Refuse an output path before any work: a directory, or a missing parent that cannot be made."""
    from pathlib import Path

    path = Path(out)
    if path.is_dir():
        raise ConfigError(f"{flag} {out!r} is a directory; name a file, e.g. {path / ('out' + suffix)}")
    parent = path.parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ConfigError(f"{flag} {out!r}: the directory {parent} is not writable")


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model
    from .registry import get_entry

    if args.input_size is not None:
        check_positive_int("--input-size", args.input_size)
    _check_out(args.out, ".onnx" if args.format == "onnx" else ".pt", "--out")
    model = _load(args)
    size = args.input_size or get_entry(args.name).input_size
    if args.int8:
        import shutil
        import tempfile
        from pathlib import Path

        from .runtimes import export_onnx, images_to_tensor, quantize_int8

        if args.format != "onnx" or not args.calibration:
            raise ConfigError("--int8 exports ONNX (--format onnx) and needs --calibration DIR "
                              "(up to 512 training images)")
        with tempfile.TemporaryDirectory() as d:
            path, _ = export_onnx(model, Path(d), size)
            path = quantize_int8(path, images_to_tensor([args.calibration], model))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, args.out)
        print(f"wrote {args.out} (onnx, int8 QDQ, input [N, {model.config.img_channels}, {size}, {size}])")
        return 0
    out = export_model(model, args.out, format=args.format, input_size=size, opset=args.opset)
    print(f"wrote {out} ({args.format}, input [N, {model.config.img_channels}, {size}, {size}])")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .dist import rank
    from .train import TrainConfig, command_line, train
    from .train.config import NOT_FLAGS

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in NOT_FLAGS}
    cfg = TrainConfig(arch=args.name, progress=not args.quiet, command=command_line(), **values)
    final = train(cfg)
    if rank() == 0:
        print(f"wrote {cfg.out}: held-out accuracy {final.get('val_acc', float('nan')):.4f} after "
              f"{final.get('epoch')} epochs (load with resnet_zoo.create({args.name!r}, "
              f"pretrained={cfg.out!r}))")
    return 0


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, with the field's type, default, help and choices."""
    import typing

    from .train import TrainConfig
    from .train.config import NOT_FLAGS

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
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=f.metadata.get("help"))
        elif base is bool:
            p.add_argument(flag, action="store_true", help=f.metadata.get("help"))
        elif typing.get_origin(base) is tuple:
            p.add_argument(flag, type=typing.get_args(base)[0], nargs="+", default=default,
                           help=f.metadata.get("help"), **extra)
        else:
            p.add_argument(flag, type=base, default=default, required=required,
                           help=f.metadata.get("help"), **extra)


def _add_model_args(p: argparse.ArgumentParser, *, fast: bool = True) -> None:
    p.add_argument("--pretrained", default=None, metavar="SPEC",
                   help="weights: a tag, hf-hub:owner/repo, a .safetensors file or a directory; "
                        "'none' for random init (default: the architecture's default weights)")
    if fast:
        p.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="compute dtype of the fast path (optimize_for_inference); auto: the "
                            "fastest float dtype this CPU supports, see `resnet-zoo info --cpu` "
                            "(default: auto); int8 needs --calibration")
        p.add_argument("--backend", choices=BACKEND_CHOICES, default="torch",
                       help="what runs the fast path: torch (default), onnxruntime or openvino "
                            "(pip install 'resnet_zoo[runtimes]'), or auto: the fastest here, "
                            "timed once and cached")
        p.add_argument("--calibration", metavar="DIR", help="up to 512 training images for --dtype int8")
        p.add_argument("--eager", action="store_true",
                       help="run the plain float32 model instead of the fast path")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 1, like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _default(function, name: str):
    """The default of ``function``'s parameter ``name``: flags default to the library's."""
    import inspect

    return inspect.signature(function).parameters[name].default


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="resnet-zoo", description="ResNets of He et al. 2016: list, inspect, run."
    )
    parser.add_argument("--version", action="version", version=f"resnet_zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

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

    p = sub.add_parser("features", help="pooled features of images: a directory of shards (or one .safetensors file)")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+",
                   help="image files, directories (searched recursively), or lists of images (.txt, one per "
                        "line; .csv or .parquet with a 'path' column); local paths or URIs pyarrow reads")
    p.add_argument("--out", required=True,
                   help="DIR: shards + index.json, resumable, torchrun- and Ray-ready; or FILE.safetensors for "
                        "small jobs ('features' [N, C]; paths in metadata)")
    p.add_argument("--shard-size", type=int, default=_default(write_feature_set, "shard_size"),
                   help="images per shard (default %(default)s)")
    p.add_argument("--store-dtype", choices=tuple(STORE_DTYPES), default=_default(write_feature_set, "store_dtype"),
                   help="dtype the features are stored in (default %(default)s)")
    p.add_argument("--format", dest="file_format", choices=FILE_FORMATS,
                   default=_default(write_feature_set, "file_format"),
                   help="shard files: safetensors (default) or parquet (a row per image: path, features; "
                        "needs pyarrow)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over when DIR holds features of other inputs, model or settings")
    p.add_argument("--batch-size", type=int, default=_default(write_feature_set, "batch_size"),
                   help="images per forward pass (default %(default)s)")
    p.add_argument("--workers", type=int, default=_default(write_feature_set, "num_workers"),
                   help="decoding processes of the local engine (default %(default)s)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable images (listed in the index with their error)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (or each torchrun rank); ray: a Ray cluster "
                        "(pip install 'resnet_zoo[ray]')")
    ray = p.add_argument_group("Ray engine (--engine ray)")
    ray.add_argument("--address", default=None,
                     help="the cluster: auto, or HOST:PORT of `ray start --head` (default: start a local instance)")
    ray.add_argument("--num-workers", type=int, default=None,
                     help="model actors (default: as many as fit beside a decode task)")
    ray.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs per model actor (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=None,
                     help="GPUs per model actor (default 0; 1 on GPU nodes: the eager model on CUDA)")
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
    p.add_argument("--peers", action="store_true",
                   help="also time onnxruntime, OpenVINO and torch.compile as users run them, and "
                        "resnet_zoo's runtime backends and backend='auto'")
    p.add_argument("--int8", action="store_true", help="also time resnet_zoo's int8 paths")
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
    p.add_argument("--int8", action="store_true",
                   help="static int8 quantization (ONNX QDQ), calibrated on --calibration images")
    p.add_argument("--calibration", metavar="DIR", help="up to 512 training images for --int8")
    _add_model_args(p, fast=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("train", help="train a model (the paper's CIFAR recipe by default); torchrun-ready")
    p.add_argument("name", help="architecture, e.g. cifar_resnet20")
    _add_train_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("weights", help="the published weights manifest")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION", parser_class=_Parser)
    w = wsub.add_parser("list", help="published weights with accuracy and preprocessing")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=_cmd_weights_list)
    w = wsub.add_parser("pin", help="record the Hub's current commit, sha256 and size in the manifest")
    w.add_argument("tags", nargs="*", help="arch.tag names (default: all)")
    w.set_defaults(func=_cmd_weights_pin)
    return parser


class _OneLineFormatter(logging.Formatter):
    """Log records as one terminal-safe line each: text from a server or a file (a label, an
    ETag) cannot add lines or send escape sequences."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        return printable(line) if record.exc_info is None else line


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLineFormatter("resnet-zoo: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING,
                        handlers=[handler])
    try:
        return args.func(args)
    except ResNetZooError as e:
        if args.debug:
            raise
        print(f"resnet-zoo: error: {printable(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("resnet-zoo: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # anything else: still one line, the traceback behind --debug
        if args.debug:
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"resnet-zoo: error: {type(e).__name__}: {printable(first)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
