"""Feature extraction end to end, JPEG files to features on disk: resnet_zoo against the plain
loop a user would write, on the same files, in one process.

    python benchmarks/features.py            # ~10 minutes on 2 cores
    python benchmarks/features.py --render   # only re-render FEATURES.md

Baseline: torchvision ``ImageFolder`` (Resize + CenterCrop + ToTensor + Normalize) + ``DataLoader``
(2 workers, batch 32) + the eager model, features gathered in memory and saved with
``torch.save``. resnet_zoo: ``write_feature_set`` (the ``resnet-zoo features`` command) with
the model from ``optimize_for_inference(backend="auto", dtype="auto")``, 2 decoding workers,
batch 32, shards on disk.

Sets: a large set, 200 JPEGs of 1200x900 made from the real sample photos of scikit-learn and
scikit-image (ResNet-50: torchvision's resnet50 for the baseline); and the CIFAR-10 (JPEG copy)
test split, 10,000 images of 32x32 (CIFAR ResNet-56 in both loops: torchvision has none), when
../shared/data is there. Each CPU keeps its own record, benchmarks/features/<cpu>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]

import resnet_zoo  # noqa: E402
from resnet_zoo.cpu import cpu_capabilities  # noqa: E402

RECORDS = ROOT / "benchmarks" / "features"
BATCH, WORKERS = 32, 2


def baseline(model: torch.nn.Module, root: Path, size: int, resize: int, mean, std) -> float:
    """images/s of the plain loop: ImageFolder + DataLoader + eager model, saved at the end."""
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=BATCH, num_workers=WORKERS)
    model.eval()
    start = time.perf_counter()
    feats = []
    with torch.inference_mode():
        for x, _ in loader:
            feats.append(model(x))
    with tempfile.TemporaryDirectory() as d:
        torch.save(torch.cat(feats), Path(d) / "features.pt")
    n = sum(len(f) for f in feats)
    return n / (time.perf_counter() - start)


def ours(name: str, root: Path) -> tuple[float, str]:
    from resnet_zoo.features import write_feature_set

    model = resnet_zoo.create(name, pretrained=name.startswith("cifar")).eval()
    fast = resnet_zoo.optimize_for_inference(model, dtype="auto", backend="auto", batch_size=BATCH)
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        summary = write_feature_set(
            fast, [root], Path(d) / "set", batch_size=BATCH, num_workers=WORKERS, progress=False, model_name=name
        )
        elapsed = time.perf_counter() - start
    return summary["images"] / elapsed, f"{fast.backend} {str(fast.dtype).replace('torch.', '')}"


def measure() -> list[dict]:
    import torchvision
    from images import large_photos

    rows = []
    with tempfile.TemporaryDirectory() as d:
        large = Path(d) / "large"
        large_photos(large / "photos", n=200, size=(1200, 900))
        tv = torchvision.models.resnet50()
        tv.fc = torch.nn.Identity()  # pooled features, as resnet_zoo's
        base = baseline(tv, large, 224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        fast, what = ours("resnet50", large)
        rows.append(
            {
                "set": "200 JPEGs 1200x900 (sample photos)",
                "model": "resnet50",
                "baseline_images_per_s": base,
                "resnet_zoo_images_per_s": fast,
                "resnet_zoo_path": what,
                "ratio": fast / base,
            }
        )
        print(rows[-1], flush=True)
    try:
        from eval_cifar10 import cifar_jpeg_dir

        test = cifar_jpeg_dir() / "test"
    except SystemExit as e:
        print(f"CIFAR-10 set skipped: {e}", file=sys.stderr)
        return rows
    model = resnet_zoo.create("cifar_resnet56", pretrained=True).eval()
    p = model.pretrained_cfg.preprocessing
    eager = _PooledOnly(model)
    base = baseline(eager, test, 32, 32, p.mean, p.std)
    fast, what = ours("cifar_resnet56", test)
    rows.append(
        {
            "set": "CIFAR-10 (JPEG copy) test split, 10,000 images 32x32",
            "model": "cifar_resnet56",
            "baseline_images_per_s": base,
            "resnet_zoo_images_per_s": fast,
            "resnet_zoo_path": what,
            "ratio": fast / base,
        }
    )
    print(rows[-1], flush=True)
    return rows


class _PooledOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_pooled(x)


def render() -> str:
    lines = [
        "Each CPU measured keeps its own record (`benchmarks/features/<cpu>.json`), written by "
        "`benchmarks/features.py`: JPEG files to features on disk, 2 decoding workers, batch 32.",
        "",
    ]
    for path in sorted(RECORDS.glob("*.json")):
        r = json.loads(path.read_text())
        lines += [
            f"{r['cpu_kind']}: {r['machine']} ({r['date']})",
            "",
            "| images | model | plain loop (ImageFolder + DataLoader + eager) | resnet_zoo features (path) | ratio |",
            "|---|---|---:|---:|---:|",
        ]
        for row in r["results"]:
            lines.append(
                f"| {row['set']} | {row['model']} | {row['baseline_images_per_s']:.1f} img/s | "
                f"{row['resnet_zoo_images_per_s']:.1f} img/s ({row['resnet_zoo_path']}) | {row['ratio']:.2f}x |"
            )
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render FEATURES.md")
    args = parser.parse_args()
    if not args.render:
        caps = cpu_capabilities()
        record = {
            "cpu_kind": caps.kind,
            "machine": caps.describe(),
            "date": time.strftime("%Y-%m-%d"),
            "results": measure(),
        }
        RECORDS.mkdir(exist_ok=True)
        (RECORDS / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = render()
    (ROOT / "benchmarks" / "FEATURES.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
