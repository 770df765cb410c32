"""Top-1 accuracy of CIFAR-10 weights on the CIFAR-10 (JPEG copy) test split, through the public API.

    python scripts/eval_cifar10.py cifar_resnet20.cifar10 cifar_resnet56.cifar10   # shipped tags
    python scripts/eval_cifar10.py cifar_resnet20 --pretrained runs/r20           # any create() spec
    python scripts/eval_cifar10.py cifar_resnet20.cifar10 --limit 500            # 50 per class
    python scripts/eval_cifar10.py cifar_resnet56.cifar10 --dtype int8 --backend onnxruntime

Each image is read from its file and prepared with the weights' own preprocessing
(``resnet_zoo.predict``: Pillow decoding, the weights' mean and std, no resize for 32x32); the
model runs eager in float32, so the figure does not depend on the CPU's fast dtype. The data
is ``--data`` (a folder with test/<class>/*.jpg), or ../shared/data/cifar10-jpg.tar.gz unpacked
into build/. ``--limit N`` takes the first N/10 files of each class (sorted by name).
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnet_zoo  # noqa: E402

ARCHIVE = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
DATA_NAME = "CIFAR-10 (JPEG copy) test split"


def cifar_jpeg_dir(data: str | None = None) -> Path:
    """The JPEG copy's root (train/ and test/), unpacking ../shared/data's archive into build/."""
    if data:
        root = Path(data)
    else:
        root = ROOT / "build" / "cifar10-jpg"
        if not (root / "test").is_dir():
            if not ARCHIVE.is_file():
                raise SystemExit(
                    f"CIFAR-10 (JPEG copy) not found: {ARCHIVE} is absent (it lives in "
                    "../shared/data beside a developer's clone); pass --data DIR"
                )
            with tarfile.open(ARCHIVE) as tar:
                tar.extractall(ROOT / "build", filter="data")
    if not (root / "test").is_dir():
        raise SystemExit(f"{root} has no test/<class>/ folders")
    return root


def test_files(root: Path, limit: int | None = None) -> tuple[list[Path], list[str]]:
    """Test images and their class names (the folder names), ``limit / 10`` a class if given."""
    files, labels = [], []
    for class_dir in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        found = sorted(class_dir.glob("*.jpg"))
        if limit is not None:
            found = found[: limit // 10]
        files += found
        labels += [class_dir.name] * len(found)
    return files, labels


def calibration_files(root: Path, n: int) -> list[Path]:
    """``n`` training images, ``n / 10`` a class (the first by name): int8 calibration data."""
    files = []
    for class_dir in sorted(p for p in (root / "train").iterdir() if p.is_dir()):
        files += sorted(class_dir.glob("*.jpg"))[: n // 10]
    return files


def evaluate(
    name: str,
    pretrained: object = True,
    *,
    data: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    dtype: str = "eager",
    backend: str = "auto",
    calibration: int = 512,
) -> dict:
    """``{"top1": %, "correct": n, "images": n, "data": ...}`` of ``create(name, pretrained=...)``,
    eager float32 (``dtype="eager"``) or through ``optimize_for_inference(dtype=..., backend=...)``;
    int8 is calibrated on ``calibration`` images of the training split."""
    root = cifar_jpeg_dir(data)
    files, labels = test_files(root, limit)
    model = resnet_zoo.create(name, pretrained=pretrained).eval()
    if dtype != "eager":
        images = calibration_files(root, calibration) if dtype == "int8" else None
        model = resnet_zoo.optimize_for_inference(
            model, dtype=dtype, backend=backend, batch_size=500, calibration=images
        )
    preds = resnet_zoo.predict(model, files, top=1, batch_size=500, progress=progress)
    correct = sum(p.topk[0][1] == label for p, label in zip(preds, labels))
    what = f"{DATA_NAME}, {len(files):,} images" + (f" (first {limit // 10} a class)" if limit else "")
    return {
        "top1": round(100 * correct / len(files), 2),
        "correct": correct,
        "images": len(files),
        "data": what,
        "dtype": dtype,
        "backend": getattr(model, "backend", "eager"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="arch.tag names, or one arch with --pretrained")
    parser.add_argument("--pretrained", default=None, help="a create() spec (directory, file, tag)")
    parser.add_argument("--data", help="folder with test/<class>/*.jpg")
    parser.add_argument("--limit", type=int, default=None, help="evaluate N images (N/10 a class)")
    parser.add_argument(
        "--dtype",
        default="eager",
        choices=("eager", "float32", "bfloat16", "int8"),
        help="eager (the plain float32 model, default) or optimize_for_inference's dtype",
    )
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"))
    parser.add_argument(
        "--calibration", type=int, default=512, help="training images that calibrate int8 (default 512, 51 a class)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name in args.names:
        r = evaluate(
            name,
            args.pretrained if args.pretrained else True,
            data=args.data,
            limit=args.limit,
            dtype=args.dtype,
            backend=args.backend,
            calibration=args.calibration,
        )
        results[name] = r
        if not args.json:
            print(
                f"{name} ({r['dtype']}, {r['backend']}): top-1 {r['top1']:.2f}% "
                f"({r['correct']}/{r['images']}) on {r['data']}"
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
