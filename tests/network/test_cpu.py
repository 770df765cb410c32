"""resnet_zoo.cpu: what this CPU runs fast, and every path that depends on it, on each kind of CPU.

The fake_cpu fixture (conftest.py) plays an AVX2-only EPYC, an AVX-512 Xeon without BF16 and an
AMX Xeon on whatever machine runs the tests; the last test runs the real CPU end to end.
"""

import json
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT

import resnet_zoo
from resnet_zoo import ConfigError, cpu
from resnet_zoo.cli import main
from resnet_zoo.inference.bench import gemm_peak_gflops, iter_bench


def test_detect_reports_torchs_own_probes():
    caps = cpu.detect()
    assert caps.isa == torch.backends.cpu.get_cpu_capability()
    assert caps.avx512_bf16 == torch.cpu._is_avx512_bf16_supported()
    assert caps.amx == torch.cpu._is_amx_tile_supported()
    assert caps.vnni == torch.cpu._is_vnni_supported()
    assert caps.onednn_bf16 == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert caps.fast_bf16 == (caps.onednn_bf16 and (caps.avx512_bf16 or caps.amx))
    assert cpu.cpu_capabilities() is cpu.cpu_capabilities()  # probed once


def test_detect_maps_an_avx2_cpu(monkeypatch):
    """torch's probes as an AVX2-only EPYC answers them."""
    for probe in ("_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported", "_is_vnni_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(cpu, "_onednn_bf16", lambda: False)
    caps = cpu.detect()
    assert (caps.isa, caps.fast_bf16, caps.fast_int8) == ("AVX2", False, False)
    assert "oneDNN" in caps.why("bfloat16")
    assert cpu.best_dtype(caps) == torch.float32


def test_a_missing_probe_answers_no(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert cpu.detect().amx is False


@pytest.mark.parametrize(
    "kind, auto, fast",
    [
        ("avx2", torch.float32, ("float32",)),
        ("avx512", torch.float32, ("float32",)),
        ("amx", torch.bfloat16, ("float32", "bfloat16", "int8")),
    ],
)
def test_auto_dtype_and_fast_dtypes_per_cpu(fake_cpu, kind, auto, fast):
    caps = fake_cpu(kind)
    assert cpu.resolve_dtype("auto") == auto
    assert tuple(d for d in ("float32", "bfloat16", "int8") if caps.is_fast(d)) == fast
    assert cpu.supported_dtypes() == ((torch.float32, torch.bfloat16) if auto == torch.bfloat16 else (torch.float32,))
    assert caps.to_dict()["auto_dtype"] == str(auto).replace("torch.", "")


@pytest.mark.parametrize("kind", ["avx2", "avx512"])
def test_bf16_is_refused_at_once_without_native_bf16(fake_cpu, kind):
    fake_cpu(kind)
    model = resnet_zoo.create("resnet18").eval()
    start = time.perf_counter()
    for dtype in (torch.bfloat16, "bfloat16"):
        with pytest.raises(ConfigError, match=r"bfloat16 is not fast on this CPU.*torch\.float32.*'auto'"):
            resnet_zoo.optimize_for_inference(model, dtype=dtype)
    assert time.perf_counter() - start < 5  # refused before any weight is reordered
    fast = resnet_zoo.optimize_for_inference(model, dtype="auto")
    assert fast.dtype == torch.float32 and not fast.use_mkldnn


def test_unknown_dtypes_name_the_choices():
    model = resnet_zoo.create("cifar_resnet20").eval()
    for bad in (torch.float16, "fp8", 3):
        with pytest.raises(ConfigError, match="auto"):
            resnet_zoo.optimize_for_inference(model, dtype=bad)


def test_bench_never_times_an_unsupported_dtype(fake_cpu, monkeypatch):
    fake_cpu("avx2")
    probed = []
    monkeypatch.setattr("resnet_zoo.inference.bench.gemm_peak_gflops", lambda d: probed.append(d) or 1.0)
    rows = [
        r for rs in iter_bench(["cifar_resnet20"], batch_size=2, iters=1, repeats=1, with_torchvision=False) for r in rs
    ]
    assert [r.path for r in rows] == ["resnet_zoo eager fp32", "resnet_zoo fast fp32"]
    assert probed == [torch.float32]
    with pytest.raises(ConfigError, match="bfloat16 is not fast"):
        next(iter_bench(["cifar_resnet20"], dtypes=("bfloat16",)))
    assert probed == [torch.float32]  # refused before the probe


def test_gemm_peak_probe_is_bounded_in_time():
    for dtype in cpu.supported_dtypes():
        start = time.perf_counter()
        assert gemm_peak_gflops(dtype, budget_s=0.5) > 0
        assert time.perf_counter() - start < 3


def test_cli_on_an_avx2_cpu(fake_cpu, capsys, tmp_path):
    fake_cpu("avx2")
    assert main(["info", "--cpu"]) == 0
    out = capsys.readouterr().out
    assert "AVX2" in out and "bfloat16     slow" in out and "auto dtype   float32" in out
    assert main(["info", "--cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fast_bf16"] is False
    samples = sorted((REPO_ROOT / "weights" / "samples").glob("*.png"))
    assert main(["predict", "cifar_resnet20.digits", *map(str, samples[:2]), "--top", "1"]) == 0
    assert "digit_0.png: 0" in capsys.readouterr().out
    assert main(["predict", "cifar_resnet20.digits", str(samples[0]), "--dtype", "bfloat16"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bfloat16 is not fast" in err and "Traceback" not in err


def test_cli_on_an_amx_cpu_chooses_bf16(fake_cpu, monkeypatch):
    fake_cpu("amx")
    chosen = []
    import resnet_zoo.inference.recipe as recipe  # where the command line's model is made fast

    real = recipe.optimize_for_inference
    # Record the choice; compute in float32 so that the test runs on a CPU without bf16.
    monkeypatch.setattr(
        recipe,
        "optimize_for_inference",
        lambda m, dtype, device, **kw: chosen.append(cpu.resolve_dtype(dtype)) or real(m, device=device),
    )
    samples = sorted((REPO_ROOT / "weights" / "samples").glob("*.png"))
    assert main(["predict", "cifar_resnet20.digits", str(samples[0]), "--top", "1"]) == 0
    assert chosen == [torch.bfloat16]


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *args], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT
    )


@pytest.mark.slow
def test_predict_features_and_bench_with_auto_on_this_cpu(tmp_path):
    """The real CPU, no fakes: every command on its default (auto) dtype."""
    caps = cpu.cpu_capabilities()
    samples = sorted((REPO_ROOT / "weights" / "samples").glob("*.png"))
    result = run("predict", "cifar_resnet20.digits", *map(str, samples), "--json", "--top", "1", "--quiet")
    assert result.returncode == 0 and not result.stderr, result.stderr
    for entry in json.loads(result.stdout):
        assert entry["topk"][0]["label"] == entry["path"].rsplit("_", 1)[1][0]
    out = tmp_path / "f.safetensors"
    result = run("features", "cifar_resnet20.digits", *map(str, samples), "--out", str(out), "--quiet")
    assert result.returncode == 0 and not result.stderr, result.stderr
    from safetensors.torch import load_file

    feats = load_file(out)["features"]
    model = resnet_zoo.create("cifar_resnet20.digits", pretrained=True).eval()
    eager, _ = resnet_zoo.extract_features(model, samples, progress=False)
    assert torch.nn.functional.cosine_similarity(feats, eager).min() >= 0.999
    result = run(
        "bench", "cifar_resnet20", "--batch-size", "4", "--iters", "1", "--repeats", "1", "--json", "--no-torchvision"
    )
    assert result.returncode == 0, result.stderr
    timed = [r["path"] for r in json.loads(result.stdout)["results"]]
    assert timed == ["resnet_zoo eager fp32", "resnet_zoo fast fp32"] + (
        ["resnet_zoo fast bf16"] if caps.fast_bf16 else []
    )


def test_each_cpu_has_its_own_record_key():
    """Zen 4 and Zen 5 both read "AMD EPYC" with AVX512-BF16: their figures must not share a file."""
    common = dict(
        model_name="AMD EPYC",
        isa="AVX512",
        avx2=True,
        avx512=True,
        avx512_bf16=True,
        amx=False,
        vnni=True,
        onednn=True,
        onednn_bf16=True,
        cores=2,
        threads=2,
        torch_version=torch.__version__,
    )
    zen4 = cpu.CpuCapabilities(family_model="family 25 model 17", **common)
    zen5 = cpu.CpuCapabilities(family_model="family 26 model 2", **common)
    assert zen4.slug == "amd-epyc-f25m17_avx512-bf16"
    assert zen5.slug == "amd-epyc-f26m2_avx512-bf16"
    assert cpu.CpuCapabilities(family_model="", **common).slug == "amd-epyc_avx512-bf16"


def test_every_benchmark_record_is_filed_under_its_own_cpu():
    for path in sorted((REPO_ROOT / "benchmarks").glob("*/*.json")):
        record = json.loads(path.read_text())
        if "cpu_slug" in record:
            assert record["cpu_slug"] == path.stem, path
        machine = record.get("machine", "")
        if "family" in machine:  # the family and model it was measured on name the file
            fam, mod = machine.split("family ")[1].split(",")[0].split(" model ")
            assert f"-f{fam}m{mod}_" in path.name, path
