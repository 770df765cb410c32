"""onnxruntime and OpenVINO backends: parity when built, the same tensors in and out, and the
choice of backend="auto" (with a faked calibration: no timed tests)."""

import json

import pytest
import torch
from conftest import REPO_ROOT, perturb_bn, rel_err
from torch import nn

import resnet_zoo
from resnet_zoo import ConfigError, optimize_for_inference
from resnet_zoo.inference import auto, runtimes

SAMPLES = REPO_ROOT / "weights" / "samples" / "cifar10"


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(0)
    model = resnet_zoo.create("cifar_resnet20")
    perturb_bn(model)
    return model.eval()


def _x(n=3, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtime_backend_matches_eager_in_float32(r20, backend):
    pytest.importorskip(backend)
    pytest.importorskip("onnxscript")
    fast = optimize_for_inference(r20, backend=backend, dtype=torch.float32)
    assert fast.backend == backend and fast.dtype == torch.float32
    x = _x()
    with torch.no_grad():
        assert rel_err(fast(x), r20(x)) <= 1e-4
        assert rel_err(fast.forward_pooled(x), r20.forward_pooled(x)) <= 1e-4
        with pytest.raises(ConfigError, match="forward_pooled"):
            fast.forward_features(x)
        assert rel_err(fast(_x(1)), r20(_x(1))) <= 1e-4  # another batch size
    assert fast(_x(0)).shape == (0, 10)
    assert fast.arch_name == "cifar_resnet20" and fast.config == r20.config
    feats, paths = resnet_zoo.extract_features(fast, [SAMPLES], progress=False)
    ref, _ = resnet_zoo.extract_features(r20, [SAMPLES], progress=False)
    assert rel_err(feats, ref) <= 1e-4 and len(paths) == 10
    with pytest.raises(ConfigError, match="inference only"):
        fast.train()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_backend_keeps_the_shipped_models_predictions(backend):
    pytest.importorskip(backend)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    fast = optimize_for_inference(model, backend=backend, dtype="int8", calibration=[SAMPLES])
    assert fast.backend == backend and fast.dtype == "int8"
    ours = resnet_zoo.predict(fast, [SAMPLES], top=1)
    eager = resnet_zoo.predict(model, [SAMPLES], top=1)
    assert [p.topk[0][0] for p in ours] == [p.topk[0][0] for p in eager]


def test_backend_arguments_are_checked(r20):
    with pytest.raises(ConfigError, match="backend must be"):
        optimize_for_inference(r20, backend="tensorrt")
    with pytest.raises(ConfigError, match="int8 runs on the onnxruntime or openvino"):
        optimize_for_inference(r20, dtype="int8")
    assert optimize_for_inference(r20).backend == "torch"
    if "onnxruntime" in auto.available_backends():
        with pytest.raises(ConfigError, match="bfloat16"):
            runtimes.build_runtime(r20, "onnxruntime", torch.bfloat16)
        with pytest.raises(ConfigError, match="calibration"):
            runtimes.build_runtime(r20, "onnxruntime", "int8")
        features = resnet_zoo.create("cifar_resnet20", features_only=True)
        with pytest.raises(ConfigError, match="features_only"):
            optimize_for_inference(features, backend="onnxruntime")
    # backend="auto" on per-stage maps stays on torch, which runs them.
    features = resnet_zoo.create("cifar_resnet20", features_only=True)
    assert optimize_for_inference(features, backend="auto").backend == "torch"


class _Fake(nn.Module):
    def __init__(self, name):
        super().__init__()
        self.backend = name

    def forward(self, x):
        return x


def test_auto_keeps_the_fastest_and_caches_the_choice(r20, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_ZOO_CACHE", str(tmp_path))
    built = []
    speeds = {"torch": 100.0, "onnxruntime": 180.0, "openvino": 150.0}

    def candidate(name):
        def build():
            built.append(name)
            return _Fake(name)

        return build

    candidates = {name: candidate(name) for name in speeds}
    timer = lambda fast, x: speeds[fast.backend]  # noqa: E731
    name, fast, measured = auto.choose_backend(r20, candidates, batch_size=16, dtype=torch.float32, timer=timer)
    assert name == "onnxruntime" and fast.backend == "onnxruntime" and measured == speeds
    assert sorted(built) == sorted(speeds)
    cache = json.loads((tmp_path / "backends.json").read_text())
    ((key, entry),) = cache.items()
    assert entry["backend"] == "onnxruntime" and "|b16|float32" in key and "cifar_resnet20" in key
    # The cached choice builds only the winner, without timing anything.
    built.clear()
    name, fast, _ = auto.choose_backend(
        r20, candidates, batch_size=16, dtype=torch.float32, timer=lambda f, x: pytest.fail("timed again")
    )
    assert name == "onnxruntime" and built == ["onnxruntime"]
    # Another batch size is another calibration, and a backend that fails to build is skipped.
    speeds["onnxruntime"] = 50.0

    def broken():
        raise resnet_zoo.ResNetZooError("cannot export")

    name, _, measured = auto.choose_backend(
        r20, {**candidates, "openvino": broken}, batch_size=1, dtype=torch.float32, timer=timer
    )
    assert name == "torch" and set(measured) == {"torch", "onnxruntime"}
    assert len(json.loads((tmp_path / "backends.json").read_text())) == 2


@pytest.mark.slow
def test_auto_through_optimize_for_inference_reports_what_runs(r20, monkeypatch):
    """With the timing faked, auto returns the candidate it measured fastest."""
    monkeypatch.setattr(auto, "time_backend", lambda fast, x: 1e9 if fast.backend == "torch" else 1.0)
    fast = optimize_for_inference(r20, backend="auto", batch_size=4)
    assert fast.backend == "torch"
    x = _x()
    with torch.no_grad():
        assert rel_err(fast(x), r20(x)) <= 1e-4


@pytest.mark.slow
def test_bench_says_which_peers_are_not_installed(monkeypatch):
    import importlib.util

    from resnet_zoo.inference.bench import iter_bench
    from resnet_zoo.inference.peers import peer_paths

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("onnxruntime", "openvino") else real(name, *a)
    )
    (rows,) = list(
        iter_bench(
            ["cifar_resnet20"],
            batch_size=2,
            dtypes=("float32",),
            iters=1,
            repeats=1,
            peers=peer_paths(("onnxruntime", "openvino")),
            gemm_peaks={torch.float32: 1.0},
        )
    )
    by_path = {r.path: r for r in rows}
    assert by_path["onnxruntime (peer)"].note == "not installed" and by_path["openvino (peer)"].note == "not installed"
    assert by_path["resnet_zoo auto fp32"].note == "backend torch"  # the only backend left
    assert by_path["resnet_zoo auto fp32"].images_per_s > 0
    with pytest.raises(ConfigError, match="peers must be"):
        list(
            iter_bench(
                ["cifar_resnet20"],
                batch_size=2,
                dtypes=("float32",),
                peers=peer_paths(("tensorrt",)),
                gemm_peaks={torch.float32: 1.0},
            )
        )


@pytest.mark.slow
def test_cli_predict_on_a_runtime_backend_matches_torch():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import io
    from contextlib import redirect_stdout

    from resnet_zoo.cli import main

    outputs = {}
    for backend in ("torch", "onnxruntime"):
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            assert (
                main(
                    [
                        "predict",
                        "cifar_resnet20",
                        str(SAMPLES),
                        "--top",
                        "1",
                        "--json",
                        "--dtype",
                        "float32",
                        "--backend",
                        backend,
                    ]
                )
                == 0
            )
        outputs[backend] = json.loads(buffer.getvalue())
    assert [e["topk"][0]["label"] for e in outputs["onnxruntime"]] == [e["topk"][0]["label"] for e in outputs["torch"]]
    assert [e["path"].rsplit("/", 1)[-1].split(".")[0] for e in outputs["torch"]] == [
        e["topk"][0]["label"] for e in outputs["torch"]
    ]  # the shipped samples are named by class


@pytest.mark.slow
def test_runtime_backends_and_the_peer_harness_leave_no_temporary_directories(tmp_path, monkeypatch):
    """build_runtime's ONNX file and the peer harness's live only while the sessions are built."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import tempfile

    from resnet_zoo.inference.bench import iter_bench
    from resnet_zoo.inference.peers import peer_paths
    from resnet_zoo.inference.runtimes import build_runtime

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model = resnet_zoo.create("cifar_resnet20").eval()
    fast = build_runtime(model, "onnxruntime")
    assert fast(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    list(
        iter_bench(
            ["cifar_resnet20"],
            batch_size=2,
            dtypes=("float32",),
            iters=1,
            repeats=1,
            peers=peer_paths(("onnxruntime",)),
            runtimes=False,
            gemm_peaks={torch.float32: 1.0},
        )
    )
    assert list(tmp_path.iterdir()) == []
