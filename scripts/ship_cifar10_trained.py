"""Train cifar_resnet20 on the CIFAR-10 (JPEG copy) train split and ship it as cifar_resnet20.cifar10_jpeg.

    python scripts/ship_cifar10_trained.py               # trains (~90 minutes on 2 cores), then ships
    python scripts/ship_cifar10_trained.py --from DIR    # ships an existing run of COMMAND

The run is `resnet-zoo train` with COMMAND below (the data unpacked from
../shared/data/cifar10-jpg.tar.gz into build/cifar10-jpg by scripts/eval_cifar10.py). Its final
model, metrics.json and curves.png go to weights/cifar_resnet20.cifar10_jpeg/ with a model card
that records the command, the recipe, the training time and the CPU; the top-1 on the JPEG test
split is measured again by scripts/eval_cifar10.py (the public API, float32) and recorded in
weights/manifest.json with the file's sha256.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_cifar10 import cifar_jpeg_dir, evaluate  # noqa: E402
from shipping import shipped_entry, update_manifest  # noqa: E402

ARCH, TAG = "cifar_resnet20", "cifar10_jpeg"
RUN = "build/r20-cifar10jpg"
# The paper's network and augmentation, with a schedule that fits about 90 minutes of 2 cores:
# 70 epochs (27,370 steps of 128) of cosine decay after 1 warm-up epoch, Nesterov momentum,
# weight decay 5e-4; bfloat16 autocast where the CPU has fast bf16 (precision auto).
COMMAND = [
    "train",
    ARCH,
    "--dataset",
    "folder",
    "--data",
    "build/cifar10-jpg",
    "--epochs",
    "70",
    "--batch-size",
    "128",
    "--lr",
    "0.1",
    "--schedule",
    "cosine",
    "--warmup-epochs",
    "1",
    "--nesterov",
    "--weight-decay",
    "5e-4",
    "--seed",
    "0",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="src", help="an existing run directory of COMMAND")
    args = parser.parse_args()
    import resnet_zoo
    from resnet_zoo.cpu import cpu_capabilities

    src = Path(args.src) if args.src else ROOT / RUN
    if not args.src:
        cifar_jpeg_dir()  # unpack the data if needed
        if src.exists():
            shutil.rmtree(src)
        subprocess.run([sys.executable, "-m", "resnet_zoo", *COMMAND, "--out", RUN, "--quiet"], check=True, cwd=ROOT)
    metrics = json.loads((src / "metrics.json").read_text())
    model = resnet_zoo.create(ARCH, pretrained=str(src))
    info = model.pretrained_info
    train_seconds = sum(m["seconds"] for m in metrics)
    extra = dict(info.extra)
    extra.update(
        {
            "dataset": "CIFAR-10 (JPEG copy): train split 50,000 images; held out: its test split",
            "training_time": f"{train_seconds / 60:.1f} minutes in the epochs' steps "
            f"({len(metrics)} epochs, {sum(m['seconds'] for m in metrics[-5:]) / 5:.0f} s "
            "per epoch at the end; decoding and evaluation not counted)",
            "cpu": cpu_capabilities().describe(),
            # Runs made before train() recorded it: the same CPU's choice (precision auto).
            "autocast": extra.get("autocast") or ("bfloat16" if cpu_capabilities().fast_bf16 else "none"),
            "command": "resnet-zoo " + " ".join(COMMAND) + f" --out {RUN}",
        }
    )
    from dataclasses import replace

    model.pretrained_info = replace(
        info,
        name=f"{ARCH}.{TAG}",
        source="trained by resnet_zoo (scripts/ship_cifar10_trained.py)",
        license="mit",
        description="the paper's CIFAR ResNet-20 trained by resnet_zoo on CIFAR-10 (JPEG copy)",
        extra=extra,
    )
    dest = ROOT / "weights" / f"{ARCH}.{TAG}"
    if dest.exists():
        shutil.rmtree(dest)
    model.eval().save_pretrained(dest)
    for name in ("metrics.json", "curves.png"):
        shutil.copy(src / name, dest / name)
    measured = evaluate(ARCH, pretrained=str(dest))
    card = dest / "README.md"
    card.write_text(card.read_text() + "\n## Training curves\n\n![curves](curves.png)\n")
    p = model.pretrained_cfg.preprocessing
    update_manifest(
        {
            f"{ARCH}.{TAG}": shipped_entry(
                f"{ARCH}.{TAG}",
                default=False,
                num_classes=10,
                labels="cifar10_classes.txt",
                top1=None,
                top1_source="",
                evaluations=[
                    {
                        "top1": measured["top1"],
                        "data": measured["data"],
                        "by": f"python scripts/eval_cifar10.py {ARCH}.{TAG}",
                    }
                ],
                license="mit",
                description="the paper's CIFAR ResNet-20 trained by resnet_zoo on CIFAR-10 (JPEG copy), "
                f"{len(metrics)} epochs",
                preprocessing=p.to_dict(),
            )
        }
    )
    print(
        f"shipped {ARCH}.{TAG}: top-1 {measured['top1']:.2f}% ({measured['correct']}/"
        f"{measured['images']}) on {measured['data']}; training {train_seconds / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
