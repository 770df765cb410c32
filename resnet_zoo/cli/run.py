"""Commands that run a model on images: ``predict``, ``features`` and ``export``."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..features import read_feature_set, write_feature_set, write_features
from ..features.format import FILE_FORMATS, STORE_DTYPES
from ..inference.export import FORMATS, export_model
from ..inference.predict import predict
from ..inference.runtimes import export_onnx, images_to_tensor, quantize_int8
from ..registry import get_entry
from ..util.checks import check_positive_int
from ..util.integrity import check_repo_id, printable
from .flags import add_loader_flags, add_model_flags, add_output_flags, check_out, default, emit, load, recipe

__all__ = ["add_commands"]

ENGINES = ("local", "ray")


def _cmd_predict(args: argparse.Namespace) -> int:
    preds = predict(
        load(args),
        args.images,
        top=args.top,
        batch_size=args.batch_size,
        num_workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.quiet,  # on stderr, as for features and train
        decode=args.decode,
    )

    def lines():
        for p in preds:
            if args.top == 1:
                c, label, score = p.topk[0]
                yield f"{printable(p.path)}: {printable(label)} (class {c}, p={score:.4f})"
                continue
            yield printable(p.path)
            for c, label, score in p.topk:
                yield f"  {score:7.4f}  {printable(label)} ({c})"

    return emit(args, preds, list(lines()))


def _ray_flags(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "--address": args.address,
        "--num-workers": args.num_workers,
        "--cpus-per-worker": args.cpus_per_worker,
        "--gpus-per-worker": args.gpus_per_worker,
    }
    if args.engine != "ray" and any(v is not None for v in given.values()):
        raise ConfigError(f"{', '.join(k for k, v in given.items() if v is not None)} go with --engine ray")
    return {
        "address": args.address,
        "num_workers": args.num_workers,
        "cpus_per_worker": 1.0 if args.cpus_per_worker is None else args.cpus_per_worker,
        "gpus_per_worker": args.gpus_per_worker or 0.0,
    }


def _cmd_features(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix and out.suffix != ".safetensors" and not out.is_dir():
        raise ConfigError(
            f"--out must be a directory (a feature set) or a .safetensors file, got {args.out!r}"
            + ("; for parquet, name a directory and pass --format parquet" if out.suffix == ".parquet" else "")
        )
    ray = _ray_flags(args)
    if args.push_to_hub is not None:
        check_repo_id(args.push_to_hub, spec=args.push_to_hub)  # before any work
    if args.out.endswith(".safetensors"):  # one file: small jobs
        return _features_file(args)
    options = dict(
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        store_dtype=args.store_dtype,
        file_format=args.file_format,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if args.engine == "ray":
        from ..features.ray_engine import write_feature_set_ray  # imports nothing of ray until it runs

        if args.decode != "cpu":
            raise ConfigError("--decode gpu runs with the local engine (torchrun for several GPUs), not --engine ray")
        if args.device != "auto":
            raise ConfigError(
                f"--device {args.device} is the local engine's; Ray workers compute where their share says: "
                "--gpus-per-worker 1 for a GPU each"
            )
        result = write_feature_set_ray(recipe(args), args.inputs, args.out, **ray, **options)
    else:
        result = write_feature_set(
            load(args), args.inputs, args.out, num_workers=args.workers, model_name=args.name, decode=args.decode,
            **options,
        )  # fmt: skip
    if result.rank != 0:
        return 0
    lines = [
        f"wrote {result.directory}: {result.images} images in {result.shards} shards "
        f"({result.written_shards} written, {result.skipped_shards} already complete); "
        "read it with resnet_zoo.features.read_feature_set"
    ]
    summary: Any = result
    if args.push_to_hub is not None:
        commit = read_feature_set(result.directory).push_to_hub(args.push_to_hub, private=args.private or None)
        lines.append(
            f"pushed to the dataset repo {args.push_to_hub} at {commit}: read_feature_set('hf-hub:{args.push_to_hub}')"
        )
        summary = {**result.to_dict(), "hub_repo": args.push_to_hub, "hub_commit": commit}
    return emit(args, summary, lines)


def _features_file(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        raise ConfigError("--engine ray writes a feature set: --out must name a directory")
    if args.push_to_hub is not None:
        raise ConfigError("--push-to-hub uploads a feature set: --out must name a directory")
    written = write_features(
        load(args),
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        num_workers=args.workers,
        skip_bad=args.skip_bad,
        progress=not args.quiet,
        model_name=args.name,
        decode=args.decode,
    )
    n, c = written.features.shape
    return emit(args, written, [f"wrote {written.path}: {n} images x {c} features"])


def _cmd_export(args: argparse.Namespace) -> int:
    if args.input_size is not None:
        check_positive_int("--input-size", args.input_size)
    check_out(args.out, ".onnx" if args.format == "onnx" else ".pt", "--out")
    model = load(args)
    size = args.input_size or get_entry(args.name).input_size
    shape = f"input [N, {model.config.img_channels}, {size}, {size}]"
    if args.int8:
        if args.format != "onnx" or not args.calibration:
            raise ConfigError(
                "--int8 exports ONNX (--format onnx) and needs --calibration DIR (up to 512 training images)"
            )
        with tempfile.TemporaryDirectory() as d:
            path, _ = export_onnx(model, Path(d), size)
            path = quantize_int8(path, images_to_tensor([args.calibration], model))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, args.out)
        print(f"wrote {args.out} (onnx, int8 QDQ, {shape})")
        return 0
    out = export_model(model, args.out, format=args.format, input_size=size, opset=args.opset)
    print(f"wrote {out} ({args.format}, {shape})")
    return 0


def _add_features(sub: Any) -> None:
    p = sub.add_parser("features", help="pooled features of images: a directory of shards (or one .safetensors file)")
    p.add_argument("name")
    p.add_argument(
        "inputs",
        nargs="+",
        help="image files, directories (searched recursively), or lists of images (.txt, one per "
        "line; .csv or .parquet with a 'path' column); local paths or URIs pyarrow reads",
    )
    p.add_argument(
        "--out",
        required=True,
        help="DIR: shards + .index.json, resumable, torchrun- and Ray-ready; or FILE.safetensors for "
        "small jobs ('features' [N, C] and the paths)",
    )
    g = p.add_argument_group("feature set")
    g.add_argument(
        "--shard-size",
        type=int,
        default=default(write_feature_set, "shard_size"),
        help="images per shard (default %(default)s)",
    )
    g.add_argument(
        "--store-dtype",
        choices=tuple(STORE_DTYPES),
        default=default(write_feature_set, "store_dtype"),
        help="dtype the features are stored in (default %(default)s)",
    )
    g.add_argument(
        "--format",
        dest="file_format",
        choices=FILE_FORMATS,
        default=default(write_feature_set, "file_format"),
        help="shard files (default %(default)s; parquet: a row per image, path and features; needs pyarrow)",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="start over when DIR holds features of other inputs, model or settings"
    )
    g.add_argument(
        "--push-to-hub",
        metavar="OWNER/NAME",
        default=None,
        help="then upload the finished set as this Hub dataset repo, with a card (HF_TOKEN or a saved login)",
    )
    g.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")
    add_loader_flags(
        p, write_feature_set, skip_bad_help="skip unreadable images (listed in the index with their error)"
    )
    add_output_flags(p, json_help="print a JSON summary at the end")
    _add_engine_flags(p)
    add_model_flags(p)
    p.set_defaults(func=_cmd_features)


def _add_engine_flags(p: Any) -> None:
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=ENGINES[0],
        help="local: this process (or each torchrun rank); ray: a Ray cluster (pip install 'resnet_zoo[ray]')",
    )
    r = p.add_argument_group("Ray engine (--engine ray)")
    r.add_argument(
        "--address",
        default=None,
        help="the cluster: auto, or HOST:PORT of `ray start --head` (default: start a local instance)",
    )
    r.add_argument("--num-workers", type=int, default=None, help="model actors (default: as many as fit)")
    r.add_argument(
        "--cpus-per-worker", type=float, default=None, help="CPUs (and torch threads) per model actor (default 1)"
    )
    r.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        help="GPUs per model actor (default 0; 1 on GPU nodes: the eager model on CUDA)",
    )


def add_commands(sub: Any) -> None:
    p = sub.add_parser("predict", help="top-k classes of images")
    p.add_argument("name", help="model name, e.g. resnet50 or resnet50.a1_in1k")
    p.add_argument("images", nargs="+", help="image files or directories")
    p.add_argument("--top", type=int, default=default(predict, "top"))
    add_output_flags(p, json_help="one JSON list on stdout")
    add_loader_flags(p, predict, skip_bad_help="skip unreadable images (logged)")
    add_model_flags(p)
    p.set_defaults(func=_cmd_predict)

    _add_features(sub)

    p = sub.add_parser("export", help="ONNX or TorchScript file of a model")
    p.add_argument("name")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--opset", type=int, default=None)
    p.add_argument(
        "--int8", action="store_true", help="static int8 quantization (ONNX QDQ), calibrated on --calibration images"
    )
    p.add_argument("--calibration", metavar="DIR", help="up to 512 training images for --int8")
    add_model_flags(p, fast=False)
    p.set_defaults(func=_cmd_export)
