"""The ``bench`` command: images/s of resnet_zoo's paths beside torchvision, in one process."""

from __future__ import annotations

import argparse
import sys
from itertools import chain
from typing import Any

from ..cpu import DTYPE_NAMES
from ..device import DEVICE_HELP, describe_gpus, resolve_device
from ..errors import ConfigError
from ..inference.bench import iter_bench, machine_description
from ..inference.device_bench import iter_device_bench
from ..inference.peers import peer_paths
from ..util.checks import check_positive_int
from ..util.plot import bar_chart
from .flags import add_output_flags, check_out, default, emit

__all__ = ["add_commands"]


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.input_size is not None:
        check_positive_int("--input-size", args.input_size)
    if args.plot:
        check_out(args.plot, ".png", "--plot")
    device = resolve_device(args.device, what="--device")
    sizes = args.batch_size or ([1, 64, 256] if device.type == "cuda" else [default(iter_bench, "batch_size")])
    if device.type == "cuda":
        if args.peers or args.int8 or args.dtype != "all":
            raise ConfigError("on a GPU bench times every GPU row; --peers, --int8 and --dtype are CPU options")
        rows: Any = iter_device_bench(
            args.names, device, batch_sizes=sizes, iters=_or(args.iters, 50), repeats=_or(args.repeats, 5),
            with_torchvision=not args.no_torchvision, progress=not args.quiet,
        )  # fmt: skip
        machine = "; ".join(describe_gpus())
    else:
        dtypes = None if args.dtype == "all" else (args.dtype,)  # None: every dtype fast here
        rows = chain.from_iterable([  # every batch size's settings checked before anything is printed
            iter_bench(
                args.names, batch_size=size, dtypes=dtypes, input_size=args.input_size,
                iters=_or(args.iters, default(iter_bench, "iters")),
                repeats=_or(args.repeats, default(iter_bench, "repeats")),
                with_torchvision=not args.no_torchvision, progress=not args.quiet,
                peers=peer_paths() if args.peers else None, int8=args.int8, device="cpu",
            )
            for size in sizes
        ])  # fmt: skip
        machine = machine_description()
    results = []
    gpu = device.type == "cuda"
    if not args.json:
        print(f"machine: {machine}")
        print(
            f"{'model':<18} {'path':<30} {'batch':>5} {'images/s':>9} {'vs tv amp' if gpu else 'vs tv':>9} "
            f"{'GFLOP/s':>9} {'of peak':>8}" + (f" {'ms/batch':>9} {'spread':>7} {'peak MiB':>9}" if gpu else "")
            + "  note",
            flush=True,
        )  # fmt: skip
    for model_rows in rows:  # each model's rows as soon as it is measured
        results.extend(model_rows)
        if not args.json:
            for r in model_rows:
                print(_line(r, gpu), flush=True)
    if args.json:
        emit(args, {"machine": machine, "results": results}, [], indent=2)
    if args.plot:
        bar_chart(
            [f"{r.model} {r.path}" for r in results],
            [r.images_per_s for r in results],
            args.plot,
            title=f"images/s, batch {', '.join(map(str, sizes))} ({machine})",
        )
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _or(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _line(r: Any, gpu: bool) -> str:
    ratio = f"{r.ratio_vs_torchvision:.2f}x" if r.ratio_vs_torchvision else "-"
    peak = f"{100 * r.fraction_of_gemm_peak:.0f}%" if r.fraction_of_gemm_peak else "-"
    line = (
        f"{r.model:<18} {r.path:<30} {r.batch_size:>5} {r.images_per_s:9.2f} {ratio:>9} {r.gflops_per_s:9.1f} {peak:>8}"
    )
    if gpu:
        ms = "-" if r.ms_per_batch is None else f"{r.ms_per_batch:.3f}"
        spread = "-" if r.spread_pct is None else f"{r.spread_pct:.1f}%"
        mem = "-" if r.peak_memory_mb is None else f"{r.peak_memory_mb:.0f}"
        line += f" {ms:>9} {spread:>7} {mem:>9}"
    return f"{line}  {r.note}".rstrip()


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench", help="images/s: resnet_zoo eager, fast path, torchvision")
    p.add_argument("names", nargs="+")
    p.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=None,
        help=f"one or more (default {default(iter_bench, 'batch_size')} on the CPU; 1 64 256 on a GPU)",
    )
    p.add_argument("--device", default="cpu", metavar="DEVICE", help=f"{DEVICE_HELP} (default cpu)")
    p.add_argument(
        "--dtype",
        choices=("all", "auto", *DTYPE_NAMES),
        default="all",
        help="fast-path dtypes to time (default all: every dtype this CPU runs fast)",
    )
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help=f"batches timed per round (default {default(iter_bench, 'iters')} on the CPU, 50 on a GPU)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"rounds (default {default(iter_bench, 'repeats')}, alternating between the paths, the best kept, "
        "on the CPU; 5 on a GPU, the median kept and the spread shown)",
    )
    p.add_argument("--no-torchvision", action="store_true")
    p.add_argument(
        "--peers",
        action="store_true",
        help="also time onnxruntime, OpenVINO and torch.compile as users run them, and "
        "resnet_zoo's runtime backends and backend='auto' (pip install "
        "'resnet_zoo[runtimes]'; a peer not installed gets a row saying so)",
    )
    p.add_argument("--int8", action="store_true", help="also time resnet_zoo's int8 paths")
    add_output_flags(p, json_help="machine-readable output")
    p.add_argument("--plot", metavar="FILE.png")
    p.set_defaults(func=_cmd_bench)
