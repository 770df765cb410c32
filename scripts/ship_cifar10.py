"""Ship the akamaster/pytorch_resnet_cifar10 CIFAR-10 ResNets as cifar_resnet{20,32,44,56}.cifar10.

    python scripts/ship_cifar10.py      # ~2 minutes: convert, measure, write weights/ and the manifest

For each depth: reads ../shared/data/akamaster-cifar10/resnetN-*.th with
``torch.load(weights_only=True)`` through resnet_zoo's own convert path
(``resnet_zoo.pretrained.convert_checkpoint``, the "cifar" layout), writes a save_pretrained
directory weights/cifar_resnetN.cifar10/ (config.json, model.safetensors, a model card that
reproduces the BSD licence notice, and LICENSE), measures its top-1 on the CIFAR-10 (JPEG copy)
test split with scripts/eval_cifar10.py, and records in weights/manifest.json: sha256, size,
the publisher's top-1 on the original test set and ours on the JPEG copy, the preprocessing
(32x32, no resize, their mean and std) and the CIFAR-10 class names. The four become the
default weights of their architectures; other tags (digits) stay as they are. Last, the first
test image of each class is copied to weights/samples/cifar10/<class>.jpg (the main command's).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_cifar10 import DATA_NAME, evaluate  # noqa: E402
from shipping import MANIFEST, shipped_entry, update_manifest  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "akamaster-cifar10"
# The publisher's test errors on the original CIFAR-10 test set (10,000 images), from the
# repository's README: resnet20 8.27%, resnet32 7.37%, resnet44 6.90%, resnet56 6.61%.
PUBLISHED_ERROR = {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61}
# Their evaluation transform: ToTensor + Normalize with ImageNet's statistics, no resize.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
UPSTREAM = "https://github.com/akamaster/pytorch_resnet_cifar10"


def ship(depth: int, checkpoint: Path, notice: str) -> dict:
    from resnet_zoo.factory import convert_checkpoint
    from resnet_zoo.manifest import Preprocessing, PretrainedInfo

    arch, tag = f"cifar_resnet{depth}", f"cifar_resnet{depth}.cifar10"
    top1 = round(100 - PUBLISHED_ERROR[depth], 2)
    with tempfile.TemporaryDirectory() as tmp:
        model = convert_checkpoint(checkpoint, arch, Path(tmp) / "converted", source="cifar")
    classes = (ROOT / "weights" / "cifar10_classes.txt").read_text().split()
    model.pretrained_info = PretrainedInfo(
        name=tag,
        source=f"{UPSTREAM} ({checkpoint.name}), converted by scripts/ship_cifar10.py",
        preprocessing=Preprocessing(32, 1.0, "bilinear", mean=MEAN, std=STD),
        labels=tuple(classes),
        top1=top1,
        license="bsd-2-clause",
        description=f"the paper's CIFAR ResNet-{depth} (option A) trained on CIFAR-10 by Yerlan Idelbayev",
        extra={"license_notice": notice, "converted_from": "cifar"},
    )
    dest = ROOT / "weights" / tag
    if dest.exists():
        shutil.rmtree(dest)
    model.eval().save_pretrained(dest)
    (dest / "LICENSE").write_text(notice)
    measured = evaluate(arch, pretrained=str(dest))
    print(
        f"{tag}: publisher {top1:.2f}% (original test set), ours {measured['top1']:.2f}% "
        f"({measured['correct']}/{measured['images']}, {measured['data']})"
    )
    return shipped_entry(
        tag,
        default=True,
        num_classes=10,
        labels="cifar10_classes.txt",
        top1=top1,
        top1_source=f"the publisher ({UPSTREAM}): original CIFAR-10 test set, 10,000 images",
        evaluations=[
            {"top1": measured["top1"], "data": measured["data"], "by": f"python scripts/eval_cifar10.py {tag}"}
        ],
        license="bsd-2-clause",
        description=f"He et al. 2016 CIFAR ResNet-{depth} (option A), CIFAR-10, by akamaster "
        "(Yerlan Idelbayev), converted",
        preprocessing={
            "input_size": 32,
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": list(MEAN),
            "std": list(STD),
        },
    )


def write_samples() -> None:
    """weights/samples/cifar10/<class>.jpg: the first test image of each class (by file name),
    bytes unchanged, for the README's main command."""
    from eval_cifar10 import cifar_jpeg_dir

    test = cifar_jpeg_dir() / "test"
    out = ROOT / "weights" / "samples" / "cifar10"
    out.mkdir(parents=True, exist_ok=True)
    for class_dir in sorted(p for p in test.iterdir() if p.is_dir()):
        first = sorted(class_dir.glob("*.jpg"))[0]
        shutil.copyfile(first, out / f"{class_dir.name}.jpg")


def main() -> None:
    if not SOURCE.is_dir():
        raise SystemExit(
            f"{SOURCE} is absent: this script converts the akamaster checkpoints found "
            "in ../shared/data beside the clone; nothing was changed"
        )
    notice = (SOURCE / "LICENSE").read_text()
    for depth in PUBLISHED_ERROR:
        found = sorted(SOURCE.glob(f"resnet{depth}-*.th"))
        if len(found) != 1:
            raise SystemExit(f"expected one {SOURCE}/resnet{depth}-*.th, found {found}")
        entry = ship(depth, found[0], notice)
        update_manifest({f"cifar_resnet{depth}.cifar10": entry}, default_for=f"cifar_resnet{depth}")
    write_samples()
    print(f"wrote {MANIFEST.relative_to(ROOT)} and weights/samples/cifar10/; accuracy on the {DATA_NAME}")


if __name__ == "__main__":
    main()
