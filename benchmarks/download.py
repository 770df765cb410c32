"""Download speed: resnet_zoo's checked download beside huggingface_hub's ``hf_hub_download``.

Both fetch the same file from the local Hub stand-in (tests/hubserver.py on 127.0.0.1) into a
cold cache, in one process, in alternating rounds (best round kept). resnet_zoo's download
also hashes the file (sha256 against the ETag) and checks every name the server sent; the
peer checks only the size. A third path times resnet_zoo's warm load (the file already in
the cache: the HEAD, then the sha256 check).

Writes benchmarks/download/<cpu>.json; every CPU keeps its own file.

    python benchmarks/download.py [--mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from hubserver import HubServer  # noqa: E402

from resnet_zoo.cpu import cpu_capabilities  # noqa: E402
from resnet_zoo.inference.timing import SETTLE_S  # noqa: E402

REPO, FILE = "bench/weights", "model.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="file size in MiB (ResNet-152 fp32: 230)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = HubServer()
    os.environ["HF_ENDPOINT"] = server.url
    data = os.urandom(args.mb << 20)
    server.add_file(REPO, FILE, data)

    from huggingface_hub import hf_hub_download

    from resnet_zoo.pretrained import hub

    def ours(cache: str) -> None:
        hub.download(REPO, FILE, cache_dir=cache)

    def peer(cache: str) -> None:
        hf_hub_download(REPO, FILE, cache_dir=cache, endpoint=server.url)

    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, fn in (
                ("resnet_zoo download (cold cache, sha256 checked)", ours),
                ("huggingface_hub hf_hub_download (cold cache, size checked)", peer),
            ):
                cache = os.path.join(tmp, f"{r}-{len(best)}-{name[:4]}")
                time.sleep(SETTLE_S)
                start = time.perf_counter()
                fn(cache)
                seconds = time.perf_counter() - start
                best[name] = min(best.get(name, float("inf")), seconds)
                if name.startswith("resnet_zoo"):
                    time.sleep(SETTLE_S)
                    start = time.perf_counter()
                    fn(cache)  # warm: HEAD + verification of the cached blob
                    warm = "resnet_zoo load from a warm cache (HEAD + sha256 check)"
                    best[warm] = min(best.get(warm, float("inf")), time.perf_counter() - start)
    server.stop()
    caps = cpu_capabilities()
    mb = args.mb * (1 << 20) / 1e6
    record = {
        "cpu_kind": caps.kind,
        "machine": caps.describe(),
        "date": time.strftime("%Y-%m-%d"),
        "file_mb": round(mb, 1),
        "rounds": args.rounds,
        "seconds": {k: round(v, 3) for k, v in best.items()},
        "mb_per_s": {k: round(mb / v, 1) for k, v in best.items()},
    }
    peer_s = best["huggingface_hub hf_hub_download (cold cache, size checked)"]
    record["ratio_vs_hf_hub_download"] = {k: round(peer_s / v, 2) for k, v in best.items()}
    out = ROOT / "benchmarks" / "download"
    out.mkdir(exist_ok=True)
    (out / f"{caps.slug}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(caps.describe())
    for k, v in best.items():
        print(f"{k:<62} {v:7.3f} s  {mb / v:8.1f} MB/s  {peer_s / v:5.2f}x the peer's speed")


if __name__ == "__main__":
    main()
