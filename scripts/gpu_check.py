"""The prepared GPU check (#33 part 7): one run that records what resnet_zoo does on a GPU.

    python scripts/gpu_check.py OUT_DIR --cifar DIR_OR_TAR [--device cuda] [--quick]

In order, each step with its share of an 8-minute budget (a step past its share is cut short
and says so in the record):

1. the device tests (tests/test_device.py, tests/train/test_train_devices.py) where pytest is
   installed;
2. ``bench`` of resnet50 and cifar_resnet56 at batch 1, 64 and 256, every row
   (resnet_zoo.inference.device_bench: CUDA events, 5 rounds of 10 batches, the median);
3. features of the CIFAR-10 JPEG test split and of 500 large JPEGs (1024x768, made from the
   bundled photos), resnet_zoo's pipeline against the loop a user would write (torchvision
   ImageFolder + DataLoader + torchvision resnet50 under AMP, the same workers), with the
   decode-only and model-only speeds of the same run, and the cosine of GPU against CPU
   features;
4. a CIFAR ResNet-20 run on the JPEG train split with ``--time-budget-min 4``: images/s and the
   top-1 on the JPEG test split.

It writes ``OUT_DIR/gpu-<name>.json`` (``cpu-<name>.json`` with ``--device cpu``): the GPU, driver,
torch and CUDA versions and every figure, rewritten after each step; and ``OUT_DIR/gpu-check.log``.
``--device cpu --quick`` runs the same steps, smaller, on a 2-core CPU in under 4 minutes (a test
runs it). Needs torch, torchvision, Pillow, numpy; runs with ``PYTHONPATH=.`` from a clone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resnet_zoo  # noqa: E402
from resnet_zoo import device as dev  # noqa: E402
from resnet_zoo.inference.timing import device_seconds_per_batch  # noqa: E402

log = logging.getLogger("gpu_check")
BUDGET_S = 480.0  # the whole check, on one H100-class GPU


class Check:
    def __init__(self, out: Path, device: torch.device, quick: bool, workers: int) -> None:
        self.out, self.device, self.quick, self.workers = out, device, quick, workers
        self.started = time.monotonic()
        self.cifar = Path()  # set by main
        gpu = dev.gpu_facts()[device.index or 0] if device.type == "cuda" else None
        name = gpu.name if gpu else resnet_zoo.cpu.cpu_capabilities().model_name
        self.path = out / f"{'gpu' if gpu else 'cpu'}-{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}.json"
        self.record: dict = {
            "device": str(device),
            "gpu": gpu.to_dict() if gpu else None,
            "cpu": resnet_zoo.cpu.cpu_capabilities().describe(),
            "driver": dev.driver_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "quick": quick,
            "workers": workers,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "steps": {},
        }

    def left(self) -> float:
        return BUDGET_S - (time.monotonic() - self.started)

    def save(self) -> None:
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(self.record, indent=1) + "\n")
        os.replace(tmp, self.path)

    def step(self, name: str, fn) -> None:
        t0 = time.monotonic()
        log.info("== %s (%.0f s of the budget left)", name, self.left())
        try:
            result = fn(self)
        except Exception as e:  # a step that fails is recorded, and the next one still runs
            log.exception("%s failed", name)
            result = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
        result["seconds"] = round(time.monotonic() - t0, 1)
        self.record["steps"][name] = result
        self.save()


def run_tests(c: Check) -> dict:
    try:
        import pytest  # noqa: F401
    except ImportError:
        return {"skipped": "pytest is not installed"}
    files = ["tests/test_device.py"] if c.quick else ["tests/test_device.py", "tests/train/test_train_devices.py"]
    marks = ["-m", "not slow"] if c.quick else ["-m", ""]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marks, *files]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(60, c.left() * 0.3))
    log.info("%s", done.stdout[-2000:])
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    return {"command": " ".join(cmd[1:]), "returncode": done.returncode, "summary": summary, **counts}


def run_bench(c: Check) -> dict:
    from resnet_zoo.inference.device_bench import iter_device_bench, matmul_peak_tflops

    half = dev.fast_dtype(c.device)  # on a CPU: bfloat16 where it is fast, else float32
    peak = matmul_peak_tflops(c.device, half, n=8192 if c.device.type == "cuda" else 512, iters=10)
    sizes = (1, 2) if c.quick else (1, 64, 256)
    iters, repeats = (2, 2) if c.quick else (10, 5)  # 5 rounds of 10: 50 timed batches a row
    rows = []
    for model_rows in iter_device_bench(
        ["resnet50", "cifar_resnet56"],
        c.device,
        batch_sizes=sizes,
        iters=iters,
        repeats=repeats,
        compile=not c.quick and c.left() > 300,
        peak_tflops=peak,
    ):
        rows += [r.to_dict() for r in model_rows]
        for r in model_rows:
            log.info("%s %s b%d: %.1f img/s %s", r.model, r.path, r.batch_size, r.images_per_s, r.note)
    return {
        "matmul_peak_tflops": round(peak, 4),
        "dtype": str(half),
        "iters": iters,
        "repeats": repeats,
        "rows": rows,
        "goals": bench_goals(rows, half),
    }


def bench_goals(rows: list[dict], half: torch.dtype) -> dict:
    """The issue's inference goals, as ratios of this run's rows."""
    tag = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(half, "fp32")

    def ips(path: str, batch: int) -> float:
        return next(
            (
                r["images_per_s"]
                for r in rows
                if r["model"] == "resnet50" and r["path"] == path and r["batch_size"] == batch
            ),
            0.0,
        )

    batch = max(r["batch_size"] for r in rows)
    fast = max(ips(f"resnet_zoo fast {tag}", batch), ips(f"resnet_zoo fast {tag} compiled", batch))
    amp = ips(f"torchvision eager amp {tag}", batch)
    compiled = ips(f"torchvision compile amp {tag} cl", batch)
    best_fast_row = max(
        (
            r
            for r in rows
            if r["model"] == "resnet50" and r["batch_size"] == batch and r["path"].startswith("resnet_zoo fast")
        ),
        key=lambda r: r["images_per_s"],
        default=None,
    )
    one = max(ips(f"resnet_zoo fast {tag}", 1), ips(f"resnet_zoo fast {tag} compiled", 1))
    return {
        "batch": batch,
        "fast_vs_torchvision_amp": round(fast / amp, 3) if amp else None,
        "fast_vs_compiled_torchvision": round(fast / compiled, 3) if compiled else None,
        "fast_share_of_matmul_peak": None
        if best_fast_row is None
        else round(best_fast_row["fraction_of_gemm_peak"], 3),
        "batch1_latency_vs_torchvision_amp": round(one / ips(f"torchvision eager amp {tag}", 1), 3)
        if ips(f"torchvision eager amp {tag}", 1)
        else None,
    }


def make_large_jpegs(directory: Path, n: int) -> Path:
    """``n`` photo-like 1024x768 JPEGs (the bundled photos enlarged, with grain) in one class folder."""
    import numpy as np
    from PIL import Image

    folder = directory / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted((ROOT / "weights" / "samples" / "cifar10").glob("*.jpg"))
    rng = np.random.default_rng(0)
    for i in range(n):
        base = Image.open(samples[i % len(samples)]).convert("RGB").resize((1024, 768), Image.BICUBIC)
        grain = rng.normal(0, 12, (768, 1024, 3))
        pixels = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
    return directory


def subset(src: Path, dst: Path, per_class: int) -> Path:
    """The first ``per_class`` images of each class folder of ``src``, linked into ``dst``."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(cls.iterdir())[:per_class]:
            os.symlink(f, dst / cls.name / f.name)
    return dst


def plain_loop(root: Path, c: Check, batch: int) -> float:
    """What a user writes: torchvision ImageFolder + DataLoader + torchvision resnet50 under AMP."""
    import torchvision
    from torchvision import transforms as T

    tf = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    data = torchvision.datasets.ImageFolder(str(root), tf)
    loader = torch.utils.data.DataLoader(
        data, batch_size=batch, num_workers=c.workers, pin_memory=c.device.type == "cuda"
    )
    model = torchvision.models.resnet50().eval().to(c.device)
    half = dev.fast_dtype(c.device)
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(c.device.type, dtype=half, enabled=half != torch.float32):
        for x, _ in loader:
            model(x.to(c.device, non_blocking=True)).float().cpu()
    dev.synchronize(c.device)
    return len(data) / (time.perf_counter() - t0)


def feature_speeds(root: Path, c: Check, batch: int) -> dict:
    from resnet_zoo.features import write_feature_set
    from resnet_zoo.inference.images import ImageFiles, Preprocess, collate_images, find_images

    torch.manual_seed(0)
    model = resnet_zoo.create("resnet50").eval()
    fast = resnet_zoo.optimize_for_inference(model, device=c.device)
    out = c.out / "tmp" / f"feats-{root.name}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = write_feature_set(fast, [root], out, batch_size=batch, num_workers=c.workers, progress=False)
    pipeline = result.images / (time.perf_counter() - t0)
    pre = Preprocess(model.pretrained_cfg.preprocessing)
    paths = find_images([root])
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, pre.uint8),
        batch_size=batch,
        num_workers=c.workers,
        collate_fn=collate_images,
        pin_memory=c.device.type == "cuda",
    )
    t0 = time.perf_counter()
    for _ in loader:
        pass
    decode = len(paths) / (time.perf_counter() - t0)
    x = torch.randn(batch, 3, 224, 224, device=c.device)
    (seconds,) = device_seconds_per_batch(fast.forward_pooled, x, c.device, iters=5, repeats=1, warmup=1)
    model_only = batch / seconds
    plain = plain_loop(root, c, batch)
    return {
        "images": result.images,
        "resnet_zoo_images_per_s": round(pipeline, 1),
        "plain_loop_images_per_s": round(plain, 1),
        "vs_plain_loop": round(pipeline / plain, 3),
        "decode_only_images_per_s": round(decode, 1),
        "model_only_images_per_s": round(model_only, 1),
        "pipeline_share_of_slower_stage": round(pipeline / min(decode, model_only), 3),
    }


def run_features(c: Check) -> dict:
    tmp = c.out / "tmp"
    n_large, per_class, batch = (8, 4, 4) if c.quick else (500, 1000, 256)
    large = make_large_jpegs(tmp / "large", n_large)
    test = c.cifar / "test" if per_class >= 1000 else subset(c.cifar / "test", tmp / "cifar-test", per_class)
    report = {"large_jpegs": feature_speeds(large, c, batch), "cifar10_jpeg_test": feature_speeds(test, c, batch)}
    # A GPU run and a CPU run of the same weights: the cosine of every image's features.
    torch.manual_seed(0)
    model = resnet_zoo.create("resnet50").eval()
    few = subset(c.cifar / "test", tmp / "cosine", 2 if c.quick else 16)
    here, _ = resnet_zoo.extract_features(
        resnet_zoo.optimize_for_inference(model, device=c.device), [few], progress=False
    )
    cpu, _ = resnet_zoo.extract_features(model, [few], progress=False, device="cpu")
    report["min_cosine_vs_cpu"] = round(float(torch.nn.functional.cosine_similarity(here, cpu).min()), 5)
    report["cosine_images"] = len(cpu)
    return report


def run_train(c: Check) -> dict:
    from resnet_zoo.train import TrainConfig, train

    budget_min = 0.3 if c.quick else max(0.5, min(4.0, (c.left() - 60) / 60))
    data = c.cifar
    if c.quick:
        data = c.out / "tmp" / "cifar-small"
        subset(c.cifar / "train", data / "train", 40)
        subset(c.cifar / "test", data / "test", 10)
    cfg = TrainConfig(
        arch="cifar_resnet20",
        dataset="folder",
        data=str(data),
        out=str(c.out / "tmp" / "train"),
        epochs=3 if c.quick else 200,
        batch_size=64 if c.quick else 512,
        lr=0.1 if c.quick else 0.4,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1 if c.quick else 2,
        label_smoothing=0.1,
        time_budget_min=budget_min,
        device=str(c.device),
        workers=c.workers,
        progress=False,
    )
    final = train(cfg)
    metrics = json.loads((Path(cfg.out) / "metrics.json").read_text())
    rate = statistics.median(m["images_per_s"] for m in metrics)
    log.info("ResNet-20: %.0f images/s, top-1 %.2f %% on the CIFAR-10 JPEG test split", rate, 100 * final["val_acc"])
    return {
        "time_budget_min": round(budget_min, 2),
        "epochs": len(metrics),
        "images_per_s_median": round(rate, 1),
        "top1_cifar10_jpeg_test": round(100 * final["val_acc"], 2),
        "command": "resnet-zoo train cifar_resnet20 --dataset folder --data CIFAR10_JPEG "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in (
                ("epochs", cfg.epochs),
                ("batch_size", cfg.batch_size),
                ("lr", cfg.lr),
                ("weight_decay", cfg.weight_decay),
                ("schedule", cfg.schedule),
                ("warmup_epochs", cfg.warmup_epochs),
                ("label_smoothing", cfg.label_smoothing),
                ("time_budget_min", round(budget_min, 2)),
                ("device", cfg.device),
            )
        )
        + " --nesterov",
    }


def cifar_dir(spec: str, out: Path) -> Path:
    """The CIFAR-10 JPEG copy: a directory with train/ and test/, or its .tar.gz (unpacked under OUT_DIR/tmp)."""
    path = Path(spec)
    if path.is_file():
        dest = out / "tmp" / "cifar"
        if not (dest / "cifar10-jpg" / "test").is_dir():
            with tarfile.open(path) as tar:
                tar.extractall(dest, filter="data")
        path = dest / "cifar10-jpg"
    if not (path / "train").is_dir() or not (path / "test").is_dir():
        raise SystemExit(f"--cifar {spec}: expected a directory with train/ and test/ class folders, or its .tar.gz")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--cifar", required=True, help="the CIFAR-10 JPEG copy: DIR with train/ and test/, or its .tar.gz")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu")
    p.add_argument("--quick", action="store_true", help="every step, small (a 2-core CPU: under 4 minutes)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: min(8, CPUs))")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.out / "gpu-check.log")],
    )
    device = dev.resolve_device(args.device, what="--device")
    c = Check(args.out, device, args.quick, args.workers or min(8, os.cpu_count() or 1))
    c.cifar = cifar_dir(args.cifar, args.out)
    log.info("%s", json.dumps({k: v for k, v in c.record.items() if k != "steps"}))
    for name, fn in (("tests", run_tests), ("bench", run_bench), ("features", run_features), ("train", run_train)):
        c.step(name, fn)
    shutil.rmtree(args.out / "tmp", ignore_errors=True)
    c.record["total_seconds"] = round(time.monotonic() - c.started, 1)
    c.save()
    log.info("wrote %s in %.0f s", c.path, c.record["total_seconds"])
    return 1 if any("error" in s for s in c.record["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
