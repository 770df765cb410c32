"""#33 part 7: the prepared GPU check runs end to end on this CPU (``--device cpu --quick``), so
that a broken script is found before a GPU is at hand. Skipped without the CIFAR-10 JPEG copy
(a user's clone has no ../shared)."""

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

CIFAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR.is_file(), reason="no CIFAR-10 JPEG copy at ../shared/data (a user's clone has none)")
def test_the_gpu_check_runs_on_the_cpu_quick(tmp_path):
    pytest.importorskip("torchvision")
    out = tmp_path / "check"
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", str(out), "--cifar", str(CIFAR), "--device", "cpu", "--quick"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (record_path,) = out.glob("cpu-*.json")
    record = json.loads(record_path.read_text())
    steps = record["steps"]
    assert list(steps) == ["tests", "bench", "features", "train"] and not any("error" in s for s in steps.values())
    assert steps["tests"].get("failed", 0) == 0 and steps["tests"]["passed"] > 0
    rows = steps["bench"]["rows"]
    assert {r["model"] for r in rows} == {"resnet50", "cifar_resnet56"} and {r["batch_size"] for r in rows} == {1, 2}
    from resnet_zoo.cpu import cpu_capabilities

    amp = {"torchvision eager amp bf16"} if cpu_capabilities().fast_bf16 else set()  # none where bf16 is emulated
    assert {"torchvision eager fp32", "resnet_zoo fast fp32", *amp} <= {r["path"] for r in rows}
    assert all(r["images_per_s"] > 0 and r["ms_per_batch"] > 0 for r in rows)
    for name in ("large_jpegs", "cifar10_jpeg_test"):
        f = steps["features"][name]
        assert f["resnet_zoo_images_per_s"] > 0 and f["plain_loop_images_per_s"] > 0 and f["images"] > 0
    assert steps["features"]["min_cosine_vs_cpu"] >= 0.999
    assert 0 <= steps["train"]["top1_cifar10_jpeg_test"] <= 100 and steps["train"]["epochs"] >= 1
    assert record["torch"] and record["device"] == "cpu" and (out / "gpu-check.log").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([record_path.name, "gpu-check.log"])  # tmp/ removed
    # The benchmarks document renders such a record (here the CPU's, shaped as a GPU's would be).
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import generate

    gpu_dir = tmp_path / "root" / "benchmarks" / "gpu"
    gpu_dir.mkdir(parents=True)
    record["gpu"] = {"name": "a CPU standing in for a GPU"}
    (gpu_dir / "gpu-stand-in.json").write_text(json.dumps(record))
    generate.ROOT = tmp_path / "root"
    try:
        text = generate.gpu_markdown()
    finally:
        generate.ROOT = REPO_ROOT
    assert "### a CPU standing in for a GPU" in text and "| resnet50 | resnet_zoo fast fp32 | 2 |" in text
