"""Training throughput: one process against two (torchrun, DDP over gloo), on this machine.

    python benchmarks/train_scaling.py   # ~1 minute; writes benchmarks/train_scaling/<cpu>.json

cifar_resnet20 on scikit-learn's digits (32x32 grey), global batch 128, 3 epochs; the figure is
the median images/s of epochs 2-3 from metrics.json (epoch 1 includes start-up).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_zoo.cpu import cpu_capabilities  # noqa: E402

ARGS = ["train", "cifar_resnet20", "--dataset", "digits", "--epochs", "3", "--quiet"]


def run(prefix: list[str], threads: int) -> float:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run(
            [*prefix, "-m", "resnet_zoo", *ARGS, "--out", d], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL
        )
        metrics = json.loads((Path(d) / "metrics.json").read_text())
    return statistics.median(m["images_per_s"] for m in metrics[1:])


def main() -> None:
    """Measure on this CPU and write its own record; another CPU's record is never touched."""
    import argparse
    import time

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    caps = cpu_capabilities()
    cores = os.cpu_count() or 1
    one = run([sys.executable], threads=cores)
    two = run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
        threads=max(1, cores // 2),
    )
    record = {
        "cpu_kind": caps.kind,
        "cpu_slug": caps.slug,
        "machine": caps.describe(),
        "date": time.strftime("%Y-%m-%d"),
        "one_process_images_per_s": one,
        "two_processes_images_per_s": two,
        "speedup": two / one,
    }
    out = ROOT / "benchmarks" / "train_scaling"
    out.mkdir(exist_ok=True)
    (out / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
