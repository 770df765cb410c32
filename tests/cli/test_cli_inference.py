"""resnet-zoo predict / features / export / bench, end to end in subprocesses."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from images import sample_photos
from safetensors import safe_open
from safetensors.torch import save_file

import resnet_zoo
from resnet_zoo.inference import extract_features


def run(*args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """resnet18 weights in torchvision's layout as a local .safetensors file."""
    tvm = pytest.importorskip("torchvision.models")
    path = tmp_path_factory.mktemp("w") / "resnet18.safetensors"
    torch.manual_seed(0)
    save_file(tvm.resnet18().state_dict(), path)
    return path


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for name, path in sample_photos().items():
        shutil.copy(path, d / name)
    return d


@pytest.mark.slow
def test_predict_json(weights, photos):
    images = sorted(str(p) for p in photos.iterdir())[:3]
    result = run("predict", "resnet18", *images, "--top", "3", "--json", "--pretrained", str(weights))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [e["path"] for e in out] == images
    labels = resnet_zoo.manifest.read_labels("imagenet_classes.txt")
    for entry in out:
        assert len(entry["topk"]) == 3
        for k in entry["topk"]:
            assert set(k) == {"class", "label", "score"}
            assert k["label"] == labels[k["class"]] and 0 <= k["score"] <= 1


@pytest.mark.slow
def test_predict_text_and_bad_image(weights, photos, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"<html>404</html>")
    result = run("predict", "resnet18", str(bad), "--pretrained", str(weights), "--quiet")  # no progress bar
    assert result.returncode == 1 and "bad.png" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    good = sorted(photos.iterdir())[0]
    result = run("predict", "resnet18", str(good), "--top", "2", "--pretrained", str(weights), "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(good) and len(result.stdout.splitlines()) == 3


@pytest.mark.slow
def test_features_file_has_rows_in_path_order(weights, photos, tmp_path):
    out = tmp_path / "feats.safetensors"
    result = run(
        "features",
        "resnet18",
        str(photos),
        "--out",
        str(out),
        "--pretrained",
        str(weights),
        "--batch-size",
        "2",
        "--workers",
        "2",
        "--eager",
    )  # eager: exact to compare
    assert result.returncode == 0, result.stderr
    assert "img" in result.stderr  # the tqdm bar
    with safe_open(str(out), framework="pt") as f:
        feats = f.get_tensor("features")
        meta = f.metadata()
    paths = json.loads(meta["paths"])
    assert paths == [str(p) for p in sorted(photos.iterdir())]
    assert feats.shape == (len(paths), 512)
    model = resnet_zoo.create("resnet18", pretrained=weights).eval()
    expected, _ = extract_features(model, [photos], progress=False)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_features_bad_images_named_or_skipped(weights, photos, tmp_path):
    (photos / "zzz_truncated.jpg").write_bytes(sample_photos()["china.jpg"].read_bytes()[:200])
    out = tmp_path / "f.safetensors"
    result = run("features", "resnet18", str(photos), "--out", str(out), "--pretrained", str(weights))
    assert result.returncode == 1 and "zzz_truncated.jpg" in result.stderr and not out.exists()
    result = run(
        "features", "resnet18", str(photos), "--out", str(out), "--pretrained", str(weights), "--skip-bad", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert "zzz_truncated.jpg" in result.stderr  # logged, never silent
    with safe_open(str(out), framework="pt") as f:
        assert all("zzz" not in p for p in json.loads(f.metadata()["paths"]))


@pytest.mark.slow
def test_export_onnx_matches_onnxruntime(tmp_path, weights):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    out = tmp_path / "r18.onnx"
    result = run(
        "export", "resnet18", "--format", "onnx", "--out", str(out), "--pretrained", str(weights), "--input-size", "64"
    )
    assert result.returncode == 0, result.stderr
    assert onnx.load(str(out)).graph.input[0].name == "images"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = resnet_zoo.create("resnet18", pretrained=weights).eval()
    for batch, size in ((3, 64), (1, 64)):  # the batch dimension is dynamic
        x = torch.randn(batch, 3, size, size)
        y = session.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            ref = model(x).numpy()
        assert y.shape == (batch, 1000)
        assert abs(y - ref).max() <= 1e-4


@pytest.mark.slow
def test_export_torchscript_reloads_and_matches(tmp_path, weights):
    out = tmp_path / "r18.pt"
    result = run(
        "export",
        "resnet18",
        "--format",
        "torchscript",
        "--out",
        str(out),
        "--pretrained",
        str(weights),
        "--input-size",
        "64",
    )
    assert result.returncode == 0, result.stderr
    loaded = torch.jit.load(str(out))
    model = resnet_zoo.create("resnet18", pretrained=weights).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.mark.slow
def test_bench_json_and_plot(tmp_path):
    plot = tmp_path / "bench.png"
    result = run(
        "bench",
        "cifar_resnet20",
        "--batch-size",
        "4",
        "--iters",
        "1",
        "--repeats",
        "1",
        "--json",
        "--plot",
        str(plot),
        "--no-torchvision",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "cores" in data["machine"]
    paths = [r["path"] for r in data["results"]]
    fast = ["resnet_zoo fast bf16"] if resnet_zoo.cpu.cpu_capabilities().fast_bf16 else []
    assert paths == ["resnet_zoo eager fp32", "resnet_zoo fast fp32", *fast]
    assert all(r["images_per_s"] > 0 for r in data["results"])
    from PIL import Image

    assert Image.open(plot).size == (900, 480)


@pytest.mark.slow
def test_features_out_must_be_safetensors(weights, photos):
    result = run("features", "resnet18", str(photos), "--out", "x.npy", "--pretrained", str(weights))
    assert result.returncode == 1 and ".safetensors" in result.stderr


@pytest.mark.slow
def test_features_progress_bar_draws_its_last_line_once(weights, photos, tmp_path):
    """Every update drawn (TQDM_MININTERVAL=0): the 100% state appears once, from close()."""
    out = tmp_path / "feats.safetensors"
    result = run(
        "features",
        "resnet18",
        str(photos),
        "--out",
        str(out),
        "--pretrained",
        str(weights),
        "--batch-size",
        "2",
        env=dict(os.environ, TQDM_MININTERVAL="0", TQDM_MINITERS="1"),
    )
    assert result.returncode == 0, result.stderr
    states = [s.strip() for s in result.stderr.replace("\r", "\n").splitlines() if s.startswith("features")]
    n = len(list(photos.iterdir()))
    assert len(states) >= 3 and sum(f"{n}/{n}" in s for s in states) == 1, states


def test_write_and_read_features_from_python(weights, photos, tmp_path):
    from resnet_zoo.features import read_features, write_features

    model = resnet_zoo.create("resnet18", pretrained=weights).eval()
    written = write_features(model, [photos], tmp_path / "f.safetensors", batch_size=3, progress=False)
    back = read_features(tmp_path / "f.safetensors")
    assert torch.equal(back.features, written.features) and back.paths == written.paths
    assert back.model == "resnet18" and back.weights == str(weights)
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]  # no temporary left
    with pytest.raises(resnet_zoo.ConfigError, match="safetensors"):
        write_features(model, [photos], tmp_path / "f.npy", progress=False)


@pytest.mark.slow
def test_export_onnx_takes_only_the_opsets_the_exporter_writes(tmp_path):
    """#36 case 24: --opset 0 or 99999 exited 0 with a traceback and wrote opset 18. Now one
    line naming the valid range, and nothing written; a valid opset is the one written."""
    pytest.importorskip("onnxscript")
    import onnx

    out = tmp_path / "m.onnx"
    for bad in ("0", "99999"):
        result = run("export", "cifar_resnet20", "--format", "onnx", "--out", str(out), "--opset", bad)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"opset must be an integer from 18 to {onnx.defs.onnx_opset_version()}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    result = run("export", "cifar_resnet20", "--format", "onnx", "--out", str(out), "--opset", "19")
    assert result.returncode == 0, result.stderr
    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 19
