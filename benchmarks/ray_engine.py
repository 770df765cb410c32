"""The Ray engine of ``resnet-zoo features`` against the local engine, on the same files, in one
process on this machine.

    python benchmarks/ray_engine.py            # ~5 minutes on 2 cores
    python benchmarks/ray_engine.py --render   # only re-render RAY.md

Both engines write the same feature set (same shards, batch 64, the fast path in the dtype
"auto" picks here, stored float32) into a fresh directory each time:

- local: ``write_feature_set`` in this process, with 0 and with 2 decoding workers (the better
  one is the reference);
- Ray: ``write_feature_set_ray`` on a local Ray instance of 2 CPUs (``ray.init(num_cpus=2)``),
  two model actors of 1 CPU each, each decoding its own batches (the default); and one actor of
  2 CPUs. "cold" includes starting the instance, "warm" runs on an instance already up (each
  run still starts its actors and loads the model in them).

Sets: the CIFAR-10 (JPEG copy) test split's first 2,000 images (200 a class), 32x32, with CIFAR
ResNet-56 (when ../shared/data is there); 500 JPEGs of 1200x900 made from the real sample
photos of scikit-learn and scikit-image, with ResNet-50 (random init: speed does not depend on
the weights; saved once, so that every worker loads the same ones). "After the first batch" is
each engine's rate once its first batch is in (its start-up excluded): the per-image cost. Every
timed run builds the model from its recipe, as the command does. The overhead is the Ray run's
time over the best local run's, minus one. Each CPU keeps its own record, benchmarks/ray_engine/<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import torch  # noqa: E402

import resnet_zoo  # noqa: E402
from resnet_zoo.cpu import cpu_capabilities  # noqa: E402
from resnet_zoo.features import write_feature_set  # noqa: E402
from resnet_zoo.features.ray_engine import write_feature_set_ray  # noqa: E402
from resnet_zoo.inference.recipe import ModelRecipe  # noqa: E402

RECORDS = ROOT / "benchmarks" / "ray_engine"
BATCH = 64


def _timed(fn, out: Path, row: dict, label: str) -> None:
    """One run into a fresh ``out``: ``row[label + "_s"]`` its wall seconds, and its images/s
    after the first batch (the engine's start-up excluded) and the seconds to that batch."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = fn(out)
    row[f"{label}_s"] = time.perf_counter() - start
    assert summary.written_shards == summary.shards, summary
    first = summary.seconds_to_first_batch
    row[f"{label}_first_batch_s"] = first
    row[f"{label}_steady_images_per_s"] = (
        None if first is None else (summary.images_this_run - BATCH) / (summary.seconds - first)
    )


def measure_set(label: str, recipe: ModelRecipe, files: list[Path], work: Path) -> dict:
    import ray

    model = recipe.build()  # only to name the path; every timed run builds its own, as the command does
    n = len(files)
    row = {
        "set": label,
        "model": recipe.name,
        "images": n,
        "path": f"{model.backend} {str(model.dtype).replace('torch.', '')}",
    }
    for workers in (0, 2):
        _timed(
            lambda out, workers=workers: write_feature_set(
                recipe.build(),
                files,
                out,
                batch_size=BATCH,
                num_workers=workers,
                progress=False,
                model_name=recipe.name,
            ),
            work / "local",
            row,
            f"local_workers{workers}",
        )
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    row["ray_init_s"] = time.perf_counter() - start
    try:

        def ray_run(cpus: float):
            return lambda out: write_feature_set_ray(
                recipe, files, out, batch_size=BATCH, cpus_per_worker=cpus, progress=False
            )

        _timed(ray_run(1), work / "ray", row, "ray_2x1cpu")
        _timed(ray_run(1), work / "ray", row, "ray_2x1cpu_warm")
        _timed(ray_run(2), work / "ray", row, "ray_1x2cpu_warm")
    finally:
        ray.shutdown()
    best = min(row["local_workers0_s"], row["local_workers2_s"])
    row["local_best_s"] = best
    row["ray_cold_s"] = row["ray_init_s"] + row["ray_2x1cpu_s"]
    row["overhead_cold"] = row["ray_cold_s"] / best - 1
    row["overhead_warm"] = row["ray_2x1cpu_warm_s"] / best - 1
    row["overhead_warm_1x2cpu"] = row["ray_1x2cpu_warm_s"] / best - 1
    row["extra_seconds_warm"] = row["ray_2x1cpu_warm_s"] - best  # a fixed cost, or a per-image one?
    best_steady = max(row["local_workers0_steady_images_per_s"], row["local_workers2_steady_images_per_s"])
    row["steady_ratio_ray_vs_local"] = row["ray_2x1cpu_warm_steady_images_per_s"] / best_steady
    for run in (
        "local_workers0",
        "local_workers2",
        "local_best",
        "ray_2x1cpu",
        "ray_cold",
        "ray_2x1cpu_warm",
        "ray_1x2cpu_warm",
    ):
        row[f"{run}_images_per_s"] = n / row[f"{run}_s"]
    print(json.dumps(row), flush=True)
    return row


def measure() -> list[dict]:
    from images import large_photos

    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        try:
            from eval_cifar10 import cifar_jpeg_dir, test_files

            cifar, _ = test_files(cifar_jpeg_dir(), limit=2000)
            rows.append(
                measure_set(
                    "CIFAR-10 (JPEG copy) test split, first 2,000 images (200 a class), 32x32",
                    ModelRecipe("cifar_resnet56"),
                    cifar,
                    work,
                )
            )
        except SystemExit as e:
            print(f"CIFAR-10 set skipped: {e}", file=sys.stderr)
        large = large_photos(work / "large", n=500, size=(1200, 900))
        torch.manual_seed(0)  # random weights, saved: every Ray worker must load the same ones
        resnet_zoo.create("resnet50", pretrained=False).save_pretrained(work / "resnet50")
        rows.append(
            measure_set(
                "500 JPEGs 1200x900 (sample photos)",
                ModelRecipe("resnet50", pretrained=str(work / "resnet50")),
                large,
                work,
            )
        )
    return rows


def render() -> str:
    lines = [
        "Each CPU measured keeps its own record (`benchmarks/ray_engine/<cpu>.json`), written by "
        "`benchmarks/ray_engine.py`: the same feature set written by the local engine and by the Ray "
        f"engine on a local instance of 2 CPUs, batch {BATCH}, in one process. Overhead: the Ray run's "
        "time over the best local run's, minus one; cold includes `ray.init`, warm runs on an instance "
        "already up (actor start and model load included in both).",
        "",
    ]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        lines += [
            f"{r['cpu_kind']}: {r['machine']} ({r['date']}, ray {r['ray']})",
            "",
            "| images | model (path) | local, 0 / 2 decode workers | Ray 2x1 CPU cold / warm | Ray 1x2 CPU warm "
            "| overhead cold / warm | warm extra time | Ray first batch after | after the first batch: Ray / local |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["results"]:

            def ips(k: str, row: dict = row) -> str:
                return f"{row[k + '_images_per_s']:.1f}"

            lines.append(
                f"| {row['set']} | {row['model']} ({row['path']}) | {ips('local_workers0')} / "
                f"{ips('local_workers2')} img/s | {ips('ray_cold')} / {ips('ray_2x1cpu_warm')} img/s | "
                f"{ips('ray_1x2cpu_warm')} img/s | {100 * row['overhead_cold']:+.0f} % / "
                f"{100 * row['overhead_warm']:+.0f} % | {row['extra_seconds_warm']:+.1f} s | "
                + (
                    f"{row['ray_2x1cpu_warm_first_batch_s']:.1f} s | "
                    f"{row['ray_2x1cpu_warm_steady_images_per_s']:.1f} / "
                    f"{max(row['local_workers0_steady_images_per_s'], row['local_workers2_steady_images_per_s']):.1f}"
                    f" img/s ({row['steady_ratio_ray_vs_local']:.2f}x) |"
                    if row.get("steady_ratio_ray_vs_local")
                    else "- | - |"
                )
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render RAY.md")
    args = parser.parse_args()
    if not args.render:
        import ray

        caps = cpu_capabilities()
        record = {
            "cpu_kind": caps.kind,
            "machine": caps.describe(),
            "date": time.strftime("%Y-%m-%d"),
            "ray": ray.__version__,
            "results": measure(),
        }
        RECORDS.mkdir(exist_ok=True)
        (RECORDS / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = render()
    (ROOT / "benchmarks" / "RAY.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
