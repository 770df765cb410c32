"""Training speed: `resnet-zoo train` against a plain PyTorch loop, in one process, on this CPU.

    python benchmarks/train_speed.py [--data DIR] [--images 12800]   # ~4 minutes on 2 cores

Both train cifar_resnet20 (the paper's CIFAR ResNet-20, option-A shortcuts) on CIFAR-10 (JPEG
copy) files, batch 128, SGD momentum 0.9, with the same augmentation (4-pixel zero padding +
random 32x32 crop + horizontal flip):

- plain: the loop a PyTorch user writes (the torchvision way, as in akamaster's trainer): a
  torchvision-style ResNet-20 module, ``torchvision.datasets.ImageFolder`` with
  ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``, a
  ``DataLoader`` with 0 and with 2 workers (the faster one is the baseline), float32, NCHW;
- resnet_zoo: ``resnet_zoo.train.train`` (what ``resnet-zoo train`` runs): images decoded once
  to uint8 in memory, augmentation on whole uint8 batches, channels-last, bfloat16 autocast
  where the CPU has fast bf16 (``precision="auto"``), and also with ``precision="float32"``.

Images/s are over one pass of ``--images`` training images after a warm-up: 3 batches for the
plain loop, a first epoch for resnet_zoo (its figure is its own per-epoch images/s of the
second epoch, which excludes the one-off decoding and the evaluation).
Writes benchmarks/train_speed/<cpu>.json; every CPU keeps its own file.

Needs torchvision, and CIFAR-10 as JPEG files (``--data``: a folder with train/<class>/*.jpg;
by default ../shared/data/cifar10-jpg.tar.gz is unpacked into build/).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "scripts"))

from eval_cifar10 import cifar_jpeg_dir  # noqa: E402

from resnet_zoo.cpu import cpu_capabilities  # noqa: E402

BATCH = 128
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)


class _Block(nn.Module):
    """A torchvision-style BasicBlock with the paper's option-A (zero-padding) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad // 2, self.pad // 2))
        return F.relu(out + short)


def plain_resnet20() -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def plain_loop(train_dir: Path, images: int, workers: int) -> float:
    """Images/s of the plain loop over ``images`` images, after 3 warm-up batches."""
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    torch.manual_seed(0)
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    data = ImageFolder(str(train_dir), transform=tf)
    loader = torch.utils.data.DataLoader(
        data, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True, persistent_workers=workers > 0
    )
    model = plain_resnet20().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    steps, warmup = images // BATCH, 3
    it = iter(loader)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * BATCH / (time.perf_counter() - start)


def resnet_zoo_loop(data_dir: Path, images: int, precision: str) -> float:
    """Images/s of `resnet-zoo train`'s second epoch over ``images`` images (the first one warms up,
    as the plain loop's 3 untimed batches do)."""
    import json as _json

    from resnet_zoo.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        train(
            TrainConfig(
                arch="cifar_resnet20",
                dataset="folder",
                data=str(data_dir),
                out=out,
                epochs=2,
                limit_train=images,
                precision=precision,
                progress=False,
            )
        )
        return _json.loads((Path(out) / "metrics.json").read_text())[1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="CIFAR-10 JPEG folder with train/<class>/ and test/<class>/")
    parser.add_argument("--images", type=int, default=12800, help="training images timed per path")
    args = parser.parse_args()
    data_dir = cifar_jpeg_dir(args.data)
    caps = cpu_capabilities()
    results: dict[str, float] = {}
    for workers in (0, 2):
        results[f"plain PyTorch loop, {workers} DataLoader workers, fp32"] = plain_loop(
            data_dir / "train", args.images, workers
        )
    for precision in ("auto", "float32"):
        results[f"resnet_zoo train, precision={precision}"] = resnet_zoo_loop(data_dir, args.images, precision)
    baseline = max(v for k, v in results.items() if k.startswith("plain"))
    record = {
        "cpu_kind": caps.kind,
        "machine": caps.describe(),
        "date": time.strftime("%Y-%m-%d"),
        "auto_precision": "bfloat16 autocast" if caps.fast_bf16 else "float32",
        "images": args.images,
        "batch_size": BATCH,
        "note": "resnet_zoo: its second epoch (the first warms up); plain: after 3 warm-up batches.",
        "images_per_s": results,
        "ratio_vs_best_plain": {k: v / baseline for k, v in results.items()},
    }
    out = ROOT / "benchmarks" / "train_speed"
    out.mkdir(exist_ok=True)
    (out / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{caps.describe()}")
    for k, v in results.items():
        print(f"{k:<52} {v:8.1f} images/s  {v / baseline:5.2f}x")


if __name__ == "__main__":
    main()
