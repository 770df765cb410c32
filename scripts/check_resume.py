"""Kill `resnet-zoo features` with SIGKILL part-way, re-run it, and compare every byte with an
uninterrupted run; then the same images on 2 processes under torchrun.

    python scripts/check_resume.py                 # the CIFAR-10 (JPEG copy) test split, 10,000 images
    python scripts/check_resume.py --data DIR      # any folder of images

Prints one JSON object: the shards, where the kills happened, and whether the files are equal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and "partial" not in p.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of images (default: the CIFAR-10 JPEG test split)")
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--shard-size", type=int, default=1000)
    args = parser.parse_args()
    if args.data:
        data = Path(args.data)
    else:
        from eval_cifar10 import cifar_jpeg_dir

        data = cifar_jpeg_dir() / "test"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the torchrun comparison uses 1 thread per process

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "resnet_zoo",
            "features",
            args.model,
            str(data),
            "--out",
            str(out),
            "--shard-size",
            str(args.shard_size),
            "--batch-size",
            "100",
            "--quiet",
            "--eager",
        ]

    report: dict = {"data": str(data), "model": args.model}
    with tempfile.TemporaryDirectory() as d:
        ref, killed, two = Path(d) / "ref", Path(d) / "killed", Path(d) / "two"
        start = time.perf_counter()
        subprocess.run(command(ref), check=True, env=env, stdout=subprocess.DEVNULL)
        report["uninterrupted_seconds"] = round(time.perf_counter() - start, 1)
        index = json.loads((ref / ".index.json").read_text())
        report["images"], report["shards"] = index["num_images"], len(index["shards"])
        kills = []
        for fraction in (0.3, 0.7):
            proc = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = max(1, int(fraction * report["shards"]))
            while len(list(killed.glob(".shard-*.json"))) < target and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(0.05)  # land inside the next shard's work
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(len(list(killed.glob(".shard-*.json"))))
        report["complete_shards_when_killed"] = kills
        out = subprocess.run(command(killed) + ["--json"], check=True, env=env, capture_output=True, text=True)
        report["resume"] = json.loads(out.stdout)
        report["resumed_equals_uninterrupted"] = files(killed) == files(ref)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "resnet_zoo",
                *command(two)[3:],
            ],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        report["torchrun_2_equals_1_process"] = files(two) == files(ref)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
