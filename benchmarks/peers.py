"""resnet_zoo's fastest path against the runtimes a user would pick instead, in one process.

    python benchmarks/peers.py            # ~25 minutes on 2 cores: measure, then render
    python benchmarks/peers.py --render   # only re-render PEERS.md and the charts

For ResNet-50 and ResNet-18 at batch 1 and 16 (224x224) and the CIFAR ResNet-56 at batch 256
(32x32), ``resnet_zoo.inference.bench.iter_bench(peers=peer_paths(), int8=True)`` (the peers
in resnet_zoo/inference/peers.py) times, in interleaved rounds:
torchvision eager; resnet_zoo eager; resnet_zoo's torch fast path in every dtype this CPU runs
fast; the peers as their documentation runs them (onnxruntime and OpenVINO with default
settings on the torchvision model exported to ONNX, OpenVINO in the precision it picks by
itself; torch.compile of the torchvision model, compile time apart); resnet_zoo on each
runtime backend, ``backend="auto"`` and int8. CIFAR ResNet-56 has no torchvision model, so its
peers run resnet_zoo's own export.

int8 accuracy: scripts/eval_cifar10.py on the CIFAR-10 (JPEG copy) test split, 10,000 images,
calibrated on 512 training images, for the shipped cifar_resnet20/56 weights (when the data is
there).

Each CPU keeps its own record, benchmarks/peers/<cpu>.json; PEERS.md shows all of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from resnet_zoo.cpu import cpu_capabilities  # noqa: E402
from resnet_zoo.inference.bench import iter_bench  # noqa: E402
from resnet_zoo.inference.peers import peer_paths  # noqa: E402

RECORDS = ROOT / "benchmarks" / "peers"
CONFIGS = [("resnet50", 1), ("resnet50", 16), ("resnet18", 1), ("resnet18", 16), ("cifar_resnet56", 256)]


def measure() -> list[dict]:
    rows = []
    for name, batch in CONFIGS:
        iters = 2 if batch > 1 else 8
        for model_rows in iter_bench(
            [name], batch_size=batch, iters=iters, repeats=4, peers=peer_paths(), int8=True, progress=True
        ):
            rows += [r.to_dict() for r in model_rows]
            for r in model_rows:
                print(f"{name} b{batch} {r.path:<32} {r.images_per_s:9.1f} {r.note}", flush=True)
    return rows


def int8_accuracy() -> list[dict]:
    out = []
    for tag in ("cifar_resnet20.cifar10", "cifar_resnet56.cifar10"):
        for dtype, backend in (("eager", "auto"), ("int8", "onnxruntime"), ("int8", "openvino")):
            result = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "eval_cifar10.py"),
                    tag,
                    "--json",
                    "--dtype",
                    dtype,
                    "--backend",
                    backend,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if result.returncode != 0:
                print(f"int8 accuracy skipped: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return out
            r = json.loads(result.stdout)[tag]
            out.append({"weights": tag, **r})
    return out


def _label(row: dict) -> str:
    return row["path"]


def _is_peer(path: str) -> bool:
    return path.endswith("(peer)") or path.startswith("torchvision")


def summary(record: dict) -> list[dict]:
    """Per configuration and dtype: resnet_zoo auto against the fastest peer of that dtype."""
    out = []
    by_config: dict[tuple, list[dict]] = {}
    for r in record["results"]:
        by_config.setdefault((r["model"], r["batch_size"]), []).append(r)
    for (model, batch), rows in by_config.items():
        for tag in ("fp32", "bf16"):
            auto = next((r for r in rows if r["path"] == f"resnet_zoo auto {tag}"), None)
            peers = [r for r in rows if _is_peer(r["path"]) and f" {tag}" in r["path"] and r["images_per_s"] > 0]
            if auto is None or not peers:
                continue
            best = max(peers, key=lambda r: r["images_per_s"])
            out.append(
                {
                    "model": model,
                    "batch": batch,
                    "dtype": tag,
                    "auto": auto["images_per_s"],
                    "auto_backend": auto["note"].replace("backend ", ""),
                    "best_peer": best["path"],
                    "best_peer_images_per_s": best["images_per_s"],
                    "ratio": auto["images_per_s"] / best["images_per_s"],
                }
            )
        int8 = [r for r in rows if r["path"].endswith("int8")]
        bf16 = next((r for r in rows if r["path"] == "resnet_zoo auto bf16"), None)
        fp32 = next((r for r in rows if r["path"] == "resnet_zoo auto fp32"), None)
        if int8:
            best8 = max(int8, key=lambda r: r["images_per_s"])
            out.append(
                {
                    "model": model,
                    "batch": batch,
                    "dtype": "int8",
                    "auto": best8["images_per_s"],
                    "auto_backend": best8["path"].split()[1],
                    "vs_bf16": best8["images_per_s"] / bf16["images_per_s"] if bf16 else None,
                    "vs_fp32": best8["images_per_s"] / fp32["images_per_s"] if fp32 else None,
                }
            )
    return out


def render_record(record: dict) -> list[str]:
    lines = [
        f"### {record['cpu_kind']}",
        "",
        f"{record['machine']} ({record['date']})",
        "",
        f"![images/s](peers/{Path(record['chart']).name})" if record.get("chart") else "",
        "",
    ]
    if record.get("note"):
        lines += [record["note"], ""]
    lines += [
        'resnet_zoo `backend="auto"` against the fastest peer in the same dtype (ratio > 1: resnet_zoo is faster):',
        "",
        "| model | batch | dtype | resnet_zoo auto (backend) | fastest peer | ratio |",
        "|---|---:|---|---|---|---:|",
    ]
    for s in record["summary"]:
        if s["dtype"] == "int8":
            continue
        lines.append(
            f"| {s['model']} | {s['batch']} | {s['dtype']} | {s['auto']:.1f} ({s['auto_backend']}) | "
            f"{s['best_peer']} {s['best_peer_images_per_s']:.1f} | {s['ratio']:.2f}x |"
        )
    int8 = [s for s in record["summary"] if s["dtype"] == "int8"]
    if int8:
        lines += [
            "",
            "int8 (static post-training quantization) against resnet_zoo's auto paths:",
            "",
            "| model | batch | int8 images/s (backend) | vs bf16 | vs fp32 |",
            "|---|---:|---|---:|---:|",
        ]
        for s in int8:
            vb = f"{s['vs_bf16']:.2f}x" if s.get("vs_bf16") else "-"
            vf = f"{s['vs_fp32']:.2f}x" if s.get("vs_fp32") else "-"
            lines.append(f"| {s['model']} | {s['batch']} | {s['auto']:.1f} ({s['auto_backend']}) | {vb} | {vf} |")
    if record.get("int8_accuracy"):
        lines += [
            "",
            "int8 accuracy, CIFAR-10 (JPEG copy) test split, 10,000 images (calibrated on 512 "
            "training images; `scripts/eval_cifar10.py`):",
            "",
            "| weights | float32 eager | int8 onnxruntime | int8 OpenVINO |",
            "|---|---:|---:|---:|",
        ]
        by = {}
        for r in record["int8_accuracy"]:
            by.setdefault(r["weights"], {})[f"{r['dtype']} {r['backend']}"] = r["top1"]
        for weights, v in by.items():
            lines.append(
                f"| `{weights}` | {v.get('eager eager', float('nan')):.2f} | "
                f"{v.get('int8 onnxruntime', float('nan')):.2f} | {v.get('int8 openvino', float('nan')):.2f} |"
            )
    lines += [
        "",
        "<details><summary>every path</summary>",
        "",
        "| model | batch | path | images/s | note |",
        "|---|---:|---|---:|---|",
    ]
    for r in record["results"]:
        ips = f"{r['images_per_s']:.1f}" if r["images_per_s"] else "-"
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['path']} | {ips} | {r['note']} |")
    lines += ["", "</details>", ""]
    return lines


def chart(record: dict, path: Path) -> None:
    from resnet_zoo.util.plot import bar_chart

    rows = [r for r in record["results"] if r["model"] == "resnet50" and r["batch_size"] == 16 and r["images_per_s"]]
    bar_chart(
        [r["path"] for r in rows],
        [r["images_per_s"] for r in rows],
        path,
        title=f"ResNet-50 batch 16, images/s ({record['cpu_kind']})",
    )


def render() -> str:
    records = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]
    records.sort(key=lambda r: r["date"], reverse=True)
    lines = [
        "Each CPU measured keeps its own record (`benchmarks/peers/<cpu>.json`), written by `benchmarks/peers.py`.",
        "",
    ]
    for record in records:
        lines += render_record(record)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true", help="only re-render PEERS.md")
    args = parser.parse_args()
    if not args.render:
        import os
        import tempfile

        # A fresh calibration cache: backend="auto" chooses on this run's timings, not an older one's.
        scratch = tempfile.TemporaryDirectory(prefix="resnet_zoo-peers-cache-")  # removed at exit
        os.environ["RESNET_ZOO_CACHE"] = scratch.name
        caps = cpu_capabilities()
        started = time.time()
        record = {
            "cpu_kind": caps.kind,
            "cpu_slug": caps.slug,
            "machine": caps.describe(),
            "date": time.strftime("%Y-%m-%d"),
            "results": measure(),
        }
        record["int8_accuracy"] = int8_accuracy()
        record["summary"] = summary(record)
        record["seconds"] = round(time.time() - started)
        RECORDS.mkdir(exist_ok=True)
        png = RECORDS / f"{caps.slug}.png"
        chart(record, png)
        record["chart"] = f"benchmarks/peers/{png.name}"
        (RECORDS / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    text = render()
    (ROOT / "benchmarks" / "PEERS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
