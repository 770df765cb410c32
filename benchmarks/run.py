"""resnet_zoo beside torchvision, in one process, on this machine; writes results.json and RESULTS.md.

    python benchmarks/run.py            # ~3 minutes on 2 cores

Throughput: ResNet-50, batch 16, 224x224: torchvision eager fp32 (the baseline), resnet_zoo
eager fp32, resnet_zoo optimize_for_inference fp32 and bf16; each path's GFLOP/s as a fraction
of this machine's matmul peak in the same dtype (ResNet-50 = 4.09 GMACs per image).
Cold start: create("resnet50", pretrained=<local timm-layout .safetensors>) against
torchvision.models.resnet50() + torch.load + load_state_dict, alternated, median of 5.
Import: what `import resnet_zoo` adds to `import torch` (python -X importtime, median of 7).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import resnet_zoo  # noqa: E402
from resnet_zoo.bench import bench_models, gemm_peak_gflops, machine_description  # noqa: E402


def throughput(batch_size: int = 16) -> dict:
    peaks = {torch.float32: gemm_peak_gflops(torch.float32), torch.bfloat16: gemm_peak_gflops(torch.bfloat16)}
    results = bench_models(["resnet50"], batch_size=batch_size, iters=3, repeats=6, gemm_peaks=peaks)
    return {
        "gemm_peak_gflops": {"fp32": peaks[torch.float32], "bf16": peaks[torch.bfloat16]},
        "results": [r.to_dict() for r in results],
    }


def cold_start(repeats: int = 5) -> dict:
    import torchvision
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as d:
        reference = torchvision.models.resnet50()
        pth, st = Path(d) / "resnet50.pth", Path(d) / "resnet50.safetensors"
        torch.save(reference.state_dict(), pth)
        save_file(reference.state_dict(), st)  # torchvision's keys = timm's layout
        del reference

        def tv() -> None:
            model = torchvision.models.resnet50()
            model.load_state_dict(torch.load(pth, map_location="cpu", weights_only=True))

        def ours() -> None:
            resnet_zoo.create("resnet50", pretrained=st)

        times: dict[str, list[float]] = {"torchvision": [], "resnet_zoo": []}
        tv(), ours()  # page cache warm for both
        for _ in range(repeats):
            for name, fn in (("torchvision", tv), ("resnet_zoo", ours)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": med, "all": times, "speedup": med["torchvision"] / med["resnet_zoo"]}


def import_overhead(repeats: int = 7) -> dict:
    """Cumulative import time of resnet_zoo after torch, from python -X importtime."""
    own = []
    wall = {"torch": [], "torch+resnet_zoo": []}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch; import resnet_zoo"],
                             capture_output=True, text=True, cwd=ROOT, check=True).stderr
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "resnet_zoo":
                own.append(int(parts[1]) / 1000)
        for label, code in (("torch", "import torch"), ("torch+resnet_zoo", "import torch, resnet_zoo")):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            wall[label].append(time.perf_counter() - start)
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys, torch; before = set(sys.modules); import resnet_zoo; "
         "print(sorted(m for m in set(sys.modules) - before if '.' not in m and m != 'resnet_zoo'))"],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    return {
        "resnet_zoo_cumulative_ms": statistics.median(own),
        "wall_ms": {k: 1000 * statistics.median(v) for k, v in wall.items()},
        "wall_added_ms": 1000 * (statistics.median(wall["torch+resnet_zoo"]) - statistics.median(wall["torch"])),
        "top_level_modules_added_by_import": heavy,
    }


def main() -> None:
    record = {
        "machine": machine_description(),
        "date": time.strftime("%Y-%m-%d"),
        "throughput": throughput(),
        "cold_start": cold_start(),
        "import": import_overhead(),
    }
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"Machine: {record['machine']} ({record['date']})", "",
             "| ResNet-50, batch 16, 224x224 | images/s | vs torchvision eager fp32 | GFLOP/s | of matmul peak |",
             "|---|---:|---:|---:|---:|"]
    for r in record["throughput"]["results"]:
        ratio = f"{r['ratio_vs_torchvision']:.2f}x" if r["ratio_vs_torchvision"] else "-"
        lines.append(f"| {r['path']} | {r['images_per_s']:.1f} | {ratio} | {r['gflops_per_s']:.0f} | "
                     f"{100 * r['fraction_of_gemm_peak']:.0f}% |")
    peaks = record["throughput"]["gemm_peak_gflops"]
    cs, imp = record["cold_start"], record["import"]
    lines += [
        "",
        f"Matmul peak (2048x2048): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.",
        "",
        f"Cold start, ResNet-50 from a local file: resnet_zoo {1000 * cs['seconds']['resnet_zoo']:.0f} ms "
        f"(create from .safetensors) vs torchvision {1000 * cs['seconds']['torchvision']:.0f} ms "
        f"(resnet50() + torch.load + load_state_dict): {cs['speedup']:.1f}x faster.",
        "",
        f"`import resnet_zoo` after `import torch`: {imp['resnet_zoo_cumulative_ms']:.1f} ms (importtime); "
        f"wall clock {imp['wall_ms']['torch']:.0f} ms vs {imp['wall_ms']['torch+resnet_zoo']:.0f} ms. "
        f"Top-level modules that `import resnet_zoo` adds to torch's: {imp['top_level_modules_added_by_import']} "
        "(huggingface_hub, safetensors, Pillow are imported when first used).",
    ]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
