"""Regenerate the files derived from the registry, the manifest and the benchmark records:
hubconf.py, the README's model table and performance summary, the docs' weights and training
tables, benchmarks/README.md's records and docs/architecture.md's import picture.

    python scripts/generate.py          # rewrite them
    python scripts/generate.py --check  # exit 1 if either is stale (run by the tests)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from route import import_picture  # noqa: E402  (scripts/route.py)

import resnet_zoo  # noqa: E402
from resnet_zoo.summary import model_table_markdown, summarize, weights_table  # noqa: E402

# Which generated blocks each file holds. Benchmark figures are written by the scripts in
# benchmarks/ on a real machine; copied or summarised here, never computed.
TABLES = {
    "README.md": {"model-table": lambda: model_table_markdown(), "perf-summary": lambda: perf_summary_markdown()},
    "docs/weights.md": {"weights-table": lambda: weights_table("markdown")},
    "docs/training.md": {
        "train-speed": lambda: train_speed_markdown(),
        "train-scaling": lambda: train_scaling_markdown(),
    },
    "benchmarks/README.md": {
        "benchmarks": lambda: (ROOT / "benchmarks" / "RESULTS.md").read_text(),
        "features": lambda: (ROOT / "benchmarks" / "FEATURES.md").read_text(),
        "peers": lambda: (ROOT / "benchmarks" / "PEERS.md").read_text(),
        "ray": lambda: (ROOT / "benchmarks" / "RAY.md").read_text(),
        "gpu": lambda: gpu_markdown(),
    },
}


def perf_summary_markdown() -> str:
    """One line per CPU kind from benchmarks/results/<cpu>.json (benchmarks/run.py): ResNet-50
    at batch 16, torchvision eager against resnet_zoo's fastest fast path, and cold start."""
    import json

    lines = [
        "| CPU (measured) | torchvision eager fp32 | resnet_zoo fast path (best dtype) | ratio "
        "| cold start vs torchvision |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        r = json.loads(path.read_text())
        rows = [x for x in r["throughput"]["results"] if x["model"] == "resnet50"]
        tv = next(x for x in rows if x["path"].startswith("torchvision"))
        best = max((x for x in rows if x["path"].startswith("resnet_zoo fast")), key=lambda x: x["images_per_s"])
        cold = r.get("cold_start", {}).get("speedup")
        lines.append(
            f"| {r['cpu_kind']} ({r['date']}) | {tv['images_per_s']:.1f} img/s | "
            f"{best['images_per_s']:.1f} img/s ({best['path'].split()[-1]}) | "
            f"{best['images_per_s'] / tv['images_per_s']:.2f}x | " + (f"{cold:.1f}x faster |" if cold else "- |")
        )
    return "\n".join(lines) + "\n"


def gpu_markdown() -> str:
    """One section per record in benchmarks/gpu/*.json, written by scripts/gpu_check.py on a GPU:
    the goals as measured ratios, then every bench row at the largest batch."""
    import json

    records = sorted((ROOT / "benchmarks" / "gpu").glob("gpu-*.json"))
    if not records:
        return (
            "No GPU record yet: none has been measured. `scripts/gpu_check.py OUT_DIR --cifar DIR` "
            "writes one on a machine with a GPU (see docs/gpu.md); it is committed here as "
            "`benchmarks/gpu/gpu-<name>.json`.\n"
        )
    parts = []
    for path in records:
        r = json.loads(path.read_text())
        gpu, steps = r["gpu"], r["steps"]
        parts += [
            f"### {gpu['name']} ({r['date']}; driver {r['driver']}, torch {r['torch']}, CUDA {r['cuda']})",
            "",
        ]
        goals = steps.get("bench", {}).get("goals", {})
        feats = steps.get("features", {}).get("large_jpegs", {})
        train = steps.get("train", {})
        parts += [
            "| goal | measured |",
            "|---|---:|",
            f"| ResNet-50 b{goals.get('batch')} fast path vs torchvision eager AMP "
            f"| {goals.get('fast_vs_torchvision_amp')}x |",
            f"| ... vs torch.compile of torchvision (AMP, channels-last) "
            f"| {goals.get('fast_vs_compiled_torchvision')}x |",
            f"| ... share of the measured bf16 matmul peak | {goals.get('fast_share_of_matmul_peak')} |",
            f"| batch 1 speed vs torchvision eager AMP | {goals.get('batch1_latency_vs_torchvision_amp')}x |",
            f"| features, large JPEGs, vs the plain GPU loop | {feats.get('vs_plain_loop')}x |",
            f"| ... share of the slower of decode-only and model-only "
            f"| {feats.get('pipeline_share_of_slower_stage')} |",
            f"| CIFAR ResNet-20 training images/s | {train.get('images_per_s_median')} |",
            f"| ... top-1 on the CIFAR-10 JPEG test split ({train.get('time_budget_min')} min) | "
            f"{train.get('top1_cifar10_jpeg_test')} % |",
            "",
        ]
        rows = steps.get("bench", {}).get("rows", [])
        if rows:
            big = max(x["batch_size"] for x in rows)
            parts += [
                "| model | path | batch | images/s | ms/batch | spread | peak MiB | vs tv AMP |",
                "|---|---|---:|---:|---:|---:|---:|---:|",
            ]
            for x in rows:
                if x["batch_size"] == big and x["images_per_s"]:
                    ratio = f"{x['ratio_vs_torchvision']:.2f}x" if x["ratio_vs_torchvision"] else "-"
                    parts.append(
                        f"| {x['model']} | {x['path']} | {big} | {x['images_per_s']:.0f} | {x['ms_per_batch']:.2f} | "
                        f"{x['spread_pct']:.1f}% | {x['peak_memory_mb'] or 0:.0f} | {ratio} |"
                    )
            parts.append("")
    return "\n".join(parts)


def train_speed_markdown() -> str:
    """From benchmarks/train_speed/<cpu>.json, written by benchmarks/train_speed.py (one per CPU)."""
    import json

    parts = []
    for path in sorted((ROOT / "benchmarks" / "train_speed").glob("*.json")):
        r = json.loads(path.read_text())
        parts += [
            f"{r['cpu_kind']}: {r['machine']} ({r['date']}); cifar_resnet20, batch "
            f"{r['batch_size']}, {r['images']:,} CIFAR-10 (JPEG copy) training images per path.",
            "",
            "| training loop | images/s | vs the faster plain loop |",
            "|---|---:|---:|",
        ]
        for name, ips in r["images_per_s"].items():
            parts.append(f"| {name} | {ips:.0f} | {r['ratio_vs_best_plain'][name]:.2f}x |")
        parts.append("")
        if r.get("note"):
            parts += [r["note"], ""]
    return "\n".join(parts)


def train_scaling_markdown() -> str:
    """From benchmarks/train_scaling/<cpu>.json, written by benchmarks/train_scaling.py (one per CPU)."""
    import json

    lines = []
    for path in sorted((ROOT / "benchmarks" / "train_scaling").glob("*.json")):
        r = json.loads(path.read_text())
        when = f" ({r['date']})" if r.get("date") else ""
        lines.append(
            f"- {r['machine']}{when}: 1 process (2 threads) {r['one_process_images_per_s']:.0f} "
            f"images/s, 2 processes (1 thread each) {r['two_processes_images_per_s']:.0f} "
            f"images/s, {r['speedup']:.2f}x."
        )
    return (
        "Measured by `benchmarks/train_scaling.py`: cifar_resnet20 on digits, global batch 128, "
        "one process against two (DDP over gloo), each CPU in its own record:\n\n" + "\n".join(lines) + "\n\n"
        "Both runs use the same 2 cores, so this measures the cost of DDP's gradient all-reduce "
        "against intra-op threading, not a gain from more hardware: the speed-up comes from more "
        "machines or GPUs, each process with its own.\n"
    )


HUBCONF_HEAD = '''"""torch.hub entry points: one function per registered resnet_zoo model.

    # from a clone of this repository (git clone, then point at the directory):
    torch.hub.load("/path/to/resnet_zoo", "cifar_resnet20", pretrained=True, source="local")
    # from GitHub, once the repository is published there:
    torch.hub.load("OWNER/resnet_zoo", "resnet50", pretrained=True)

Generated by scripts/generate.py from the registry; do not edit by hand.
"""

dependencies = ["torch", "safetensors", "huggingface_hub"]


def _create(name, pretrained, kwargs):
    # Imported on first use: torch.hub lists the entry points without building anything.
    from resnet_zoo.factory import create_for_hub

    return create_for_hub(name, pretrained, **kwargs)
'''

HUBCONF_ENTRY = '''

def {name}(pretrained=False, **kwargs):
    """{description}.

    {params:,} parameters, {gmacs:.2f} GMACs at {size}x{size}.

    Args:
        pretrained: False; True (the default weights); a weights tag; "hf-hub:owner/repo[@rev]";
            a local .safetensors file or a save_pretrained directory.
        **kwargs: passed to resnet_zoo.create (num_classes, img_channels, features_only, ...);
            torchvision's weights= ("DEFAULT", a tag or a torchvision weights enum, None) and
            progress= are taken too.
    """
    return _create("{name}", pretrained, kwargs)
'''


def render_hubconf() -> str:
    parts = [HUBCONF_HEAD]
    for name in resnet_zoo.list_models():
        s = summarize(name)
        parts.append(
            HUBCONF_ENTRY.format(
                name=name, description=s.description, params=s.params, gmacs=s.gmacs, size=s.input_size
            )
        )
    return "".join(parts)


def render_readme(current: str, tables: dict) -> str:
    for marker, render in tables.items():
        start = f"<!-- {marker}:start (generated by scripts/generate.py) -->\n"
        end = f"<!-- {marker}:end -->\n"
        try:
            head, rest = current.split(start, 1)
            _, tail = rest.split(end, 1)
        except ValueError:
            raise SystemExit(f"the file lacks the markers {start.strip()} ... {end.strip()}") from None
        current = head + start + render() + end + tail
    return current


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check freshness")
    args = parser.parse_args()
    targets = {
        ROOT / "hubconf.py": render_hubconf(),
        ROOT / "docs" / "architecture.md": render_readme(
            (ROOT / "docs" / "architecture.md").read_text(), {"imports": import_picture}
        ),
    }
    for name, tables in TABLES.items():
        targets[ROOT / name] = render_readme((ROOT / name).read_text(), tables)
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"{p.name} is stale: run python scripts/generate.py", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.write_text(targets[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
