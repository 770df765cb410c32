"""resnet_zoo beside torchvision, in one process, on this machine's CPU.

    python benchmarks/run.py            # ~3 minutes on 2 cores: measure, then render
    python benchmarks/run.py --render   # only re-render RESULTS.md from the recorded files

Each kind of CPU keeps its own record, benchmarks/results/<cpu>.json (named by
resnet_zoo.cpu's slug: model and fastest units), so a run on one CPU never overwrites another's
figures; RESULTS.md shows every recorded CPU, each table under its CPU's name.

Throughput: ResNet-50, batch 16, 224x224: torchvision eager fp32 (the baseline), resnet_zoo
eager fp32, resnet_zoo optimize_for_inference in every dtype this CPU runs fast (bf16 only with
AVX512-BF16 or AMX); each path's GFLOP/s as a fraction of this machine's matmul peak in the same
dtype (ResNet-50 = 4.09 GMACs per image): the faster of torch.matmul and the same product as a
1x1 convolution (resnet_zoo.inference.bench.gemm_peak_gflops).
Cold start: create("resnet50", pretrained=<local timm-layout .safetensors>) against
torchvision.models.resnet50() + torch.load + load_state_dict, alternated, median of 5.
Import: what `import resnet_zoo` adds to `import torch` (python -X importtime, median of 7).
"""

from __future__ import annotations

import argparse
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
from resnet_zoo.cpu import cpu_capabilities, supported_dtypes  # noqa: E402
from resnet_zoo.inference.bench import bench_models, gemm_peak_gflops  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
_TAG = {torch.float32: "fp32", torch.bfloat16: "bf16"}


def throughput(batch_size: int = 16) -> dict:
    peaks = {d: gemm_peak_gflops(d, budget_s=4.0) for d in supported_dtypes()}
    results = bench_models(["resnet50"], batch_size=batch_size, iters=3, repeats=6, gemm_peaks=peaks)
    return {
        "gemm_peak_gflops": {_TAG[d]: v for d, v in peaks.items()},
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
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import torch; import resnet_zoo"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stderr
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "resnet_zoo":
                own.append(int(parts[1]) / 1000)
        for label, code in (("torch", "import torch"), ("torch+resnet_zoo", "import torch, resnet_zoo")):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            wall[label].append(time.perf_counter() - start)
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, torch; before = set(sys.modules); import resnet_zoo; "
            "print(sorted(m for m in set(sys.modules) - before if '.' not in m and m != 'resnet_zoo'))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    return {
        "resnet_zoo_cumulative_ms": statistics.median(own),
        "wall_ms": {k: 1000 * statistics.median(v) for k, v in wall.items()},
        "wall_added_ms": 1000 * (statistics.median(wall["torch+resnet_zoo"]) - statistics.median(wall["torch"])),
        "top_level_modules_added_by_import": heavy,
    }


def render_record(record: dict) -> list[str]:
    """One CPU's section of RESULTS.md."""
    lines = [
        f"### {record['cpu_kind']}",
        "",
        f"{record['machine']} ({record['date']})",
        "",
        "| ResNet-50, batch 16, 224x224 | images/s | vs torchvision eager fp32 | GFLOP/s | of matmul peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in record["throughput"]["results"]:
        ratio = f"{r['ratio_vs_torchvision']:.2f}x" if r["ratio_vs_torchvision"] else "-"
        peak = f"{100 * r['fraction_of_gemm_peak']:.0f}%" if r["fraction_of_gemm_peak"] else "-"
        lines.append(f"| {r['path']} | {r['images_per_s']:.1f} | {ratio} | {r['gflops_per_s']:.0f} | {peak} |")
    peaks = record["throughput"]["gemm_peak_gflops"]
    cs, imp = record["cold_start"], record["import"]
    lines += [
        "",
        "Matmul peak (the faster of `torch.matmul` and a 1x1 convolution): "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
        + ".",
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
    if record.get("note"):
        lines += ["", record["note"]]
    return lines + [""]


def render() -> str:
    """RESULTS.md: every recorded CPU, newest first."""
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    records.sort(key=lambda r: r["date"], reverse=True)
    lines = ["Each CPU measured keeps its own table (`benchmarks/results/<cpu>.json`).", ""]
    for record in records:
        lines += render_record(record)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render RESULTS.md")
    args = parser.parse_args()
    if not args.render:
        caps = cpu_capabilities()
        record = {
            "cpu_kind": caps.kind,
            "cpu_slug": caps.slug,
            "machine": caps.describe(),
            "cpu": caps.to_dict(),
            "date": time.strftime("%Y-%m-%d"),
            "throughput": throughput(),
            "cold_start": cold_start(),
            "import": import_overhead(),
        }
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = render()
    (ROOT / "benchmarks" / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
