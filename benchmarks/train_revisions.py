"""Training speed of two revisions of resnet_zoo on this CPU, alternating, so that a change to the
training path is measured against the code it replaces on the same machine.

    python benchmarks/train_revisions.py OLD_REV [NEW_REV] [--data DIR] [--images 3200] [--rounds 2]

Each revision is checked out in a temporary git worktree; each round runs, in a fresh process
per revision (old first, then new), what `resnet-zoo train` runs: cifar_resnet20 on CIFAR-10
(JPEG copy) files, batch 128, two epochs of ``--images`` images, and takes the second epoch's
images/s (benchmarks/train_speed.py's ``resnet_zoo_loop``). The best round of each is kept.
Writes benchmarks/train_revisions/<cpu>-<old>-<new>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUN = """
import sys, json
from pathlib import Path
sys.path.insert(0, {tree!r})
sys.path.insert(0, {tree!r} + "/benchmarks")
from train_speed import resnet_zoo_loop
print(json.dumps(resnet_zoo_loop(Path({data!r}), {images}, "auto")))
"""


def _rev(rev: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new", nargs="?", default="HEAD")
    p.add_argument(
        "--data", help="CIFAR-10 JPEG folder with train/ and test/ (default: ../shared/data's copy, unpacked)"
    )
    p.add_argument("--images", type=int, default=3200)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    from resnet_zoo.cpu import cpu_capabilities

    caps = cpu_capabilities()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else None
        if data is None:
            with tarfile.open(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz") as tar:
                tar.extractall(tmp, filter="data")
            data = Path(tmp) / "cifar10-jpg"
        revs = {"old": _rev(args.old), "new": _rev(args.new)}
        trees = {}
        for name, rev in revs.items():
            trees[name] = str(Path(tmp) / f"tree-{name}")
            subprocess.run(
                ["git", "worktree", "add", "--detach", trees[name], rev], cwd=ROOT, check=True, capture_output=True
            )
        try:
            speeds: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                for name in ("old", "new"):
                    code = RUN.format(tree=trees[name], data=str(data), images=args.images)
                    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                    speeds[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(f"{name} {revs[name]}: {speeds[name][-1]:.1f} images/s", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
    best = {k: max(v) for k, v in speeds.items()}
    record = {
        "cpu_kind": caps.kind,
        "machine": caps.describe(),
        "revisions": revs,
        "images": args.images,
        "rounds": speeds,
        "best_images_per_s": best,
        "new_vs_old": best["new"] / best["old"],
    }
    out_dir = ROOT / "benchmarks" / "train_revisions"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{caps.slug}-{revs['old']}-{revs['new']}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"new/old {record['new_vs_old']:.3f}x; wrote {path}")


if __name__ == "__main__":
    main()
