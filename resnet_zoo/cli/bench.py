"""The ``bench`` command: images/s of resnet_zoo's paths beside torchvision, in one process."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cpu import DTYPE_NAMES
from ..inference.bench import iter_bench, machine_description
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
    dtypes = None if args.dtype == "all" else (args.dtype,)  # None: every dtype fast here
    rows = iter_bench(
        args.names,
        batch_size=args.batch_size,
        dtypes=dtypes,
        input_size=args.input_size,
        iters=args.iters,
        repeats=args.repeats,
        with_torchvision=not args.no_torchvision,
        progress=not args.quiet,
        peers=peer_paths() if args.peers else None,
        int8=args.int8,
    )
    machine = machine_description()
    results = []
    if not args.json:
        print(f"machine: {machine}")
        print(
            f"{'model':<18} {'path':<30} {'images/s':>9} {'vs tv':>7} {'GFLOP/s':>9} {'of peak':>8}  note", flush=True
        )
    for model_rows in rows:  # each model's rows as soon as it is measured
        results.extend(model_rows)
        if args.json:
            continue
        for r in model_rows:
            ratio = f"{r.ratio_vs_torchvision:.2f}x" if r.ratio_vs_torchvision else "-"
            peak = f"{100 * r.fraction_of_gemm_peak:.0f}%" if r.fraction_of_gemm_peak else "-"
            print(
                f"{r.model:<18} {r.path:<30} {r.images_per_s:9.2f} {ratio:>7} "
                f"{r.gflops_per_s:9.1f} {peak:>8}  {r.note}".rstrip(),
                flush=True,
            )
    if args.json:
        emit(args, {"machine": machine, "results": results}, [], indent=2)
    if args.plot:
        bar_chart(
            [f"{r.model} {r.path}" for r in results],
            [r.images_per_s for r in results],
            args.plot,
            title=f"images/s, batch {args.batch_size} ({machine})",
        )
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench", help="images/s: resnet_zoo eager, fast path, torchvision")
    p.add_argument("names", nargs="+")
    p.add_argument("--batch-size", type=int, default=default(iter_bench, "batch_size"))
    p.add_argument(
        "--dtype",
        choices=("all", "auto", *DTYPE_NAMES),
        default="all",
        help="fast-path dtypes to time (default all: every dtype this CPU runs fast)",
    )
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument(
        "--iters", type=int, default=default(iter_bench, "iters"), help="batches timed per round (default %(default)s)"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=default(iter_bench, "repeats"),
        help="rounds alternating between the paths; the best is kept (default %(default)s)",
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
