"""#33: one device option for every job. Device choice and its errors are tested with CUDA's
availability and device count monkeypatched; every device-dependent path (the fast path,
predict, features, training steps, resume across devices, bench rows) runs on each device
present: always the CPU, CUDA where there is a GPU, skipped with the reason otherwise."""

import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

import resnet_zoo
import resnet_zoo.device as dev
from resnet_zoo import ConfigError
from resnet_zoo.device import GpuFacts, resolve_device

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not dev.cuda_available(), reason="no CUDA device on this machine (CI has none)"),
    ),
]
SAMPLES = REPO_ROOT / "weights" / "samples" / "cifar10"


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n, capability)``: make resnet_zoo believe this machine has ``n`` such GPUs."""

    def play(n: int, capability=(9, 0)):
        monkeypatch.setattr(dev, "cuda_device_count", lambda: n)
        monkeypatch.setattr(dev, "cuda_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: ["NVIDIA H100", "NVIDIA T4"][int(i) % 2])
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)

    return play


def test_auto_and_cpu_on_a_machine_without_cuda(gpus):
    gpus(0)
    for spec in ("auto", None, "AUTO", "cpu", torch.device("cpu")):
        assert resolve_device(spec) == torch.device("cpu")
    for spec in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"--device {spec}: this machine has no CUDA device .*use --device cpu"):
            resolve_device(spec, what="--device")
    for spec in ("tpu", "cuda:x", "mps", "cuda:-1", ""):
        with pytest.raises(ConfigError, match="expected auto .* cpu, cuda or cuda:N"):
            resolve_device(spec)
    with pytest.raises(ConfigError, match="a string or a torch.device"):
        resolve_device(3)


def test_cuda_choice_with_gpus_and_under_torchrun(gpus, monkeypatch):
    gpus(2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("auto") == torch.device("cuda", 0) == resolve_device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1) == resolve_device(torch.device("cuda", 1))
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's rank 1: its own GPU
    assert resolve_device("auto") == torch.device("cuda", 1) == resolve_device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    with pytest.raises(
        ConfigError, match=r"cuda:2: this machine has 2 CUDA devices: cuda:0 NVIDIA H100, cuda:1 NVIDIA T4"
    ):
        resolve_device("cuda:2")


def test_gpu_facts_say_what_each_gpu_runs_fast():
    h100 = GpuFacts(0, "NVIDIA H100 80GB HBM3", (9, 0), 80 << 30, 132)
    t4 = GpuFacts(1, "Tesla T4", (7, 5), 15 << 30, 40)
    assert h100.fast_dtypes == ("bfloat16", "float16", "tf32") and t4.fast_dtypes == ("float16",)
    lines = dev.describe_gpus([h100, t4])
    assert "cuda:0: NVIDIA H100 80GB HBM3, compute capability 9.0, 80.0 GiB, 132 SMs; fast: bfloat16" in lines[1]
    assert "compute capability 7.5" in lines[2] and "GradScaler" in lines[2]
    assert t4.to_dict()["fast_dtypes"] == ["float16"] and h100.to_dict()["device"] == "cuda:0"


def test_gpu_dtypes_follow_the_compute_capability(gpus, monkeypatch):
    from resnet_zoo.inference.torch_path import gpu_dtype
    from resnet_zoo.train.config import TrainConfig
    from resnet_zoo.train.loop import _autocast_dtype

    cuda = torch.device("cuda", 0)
    gpus(1, capability=(7, 5))  # a T4: no bfloat16
    assert gpu_dtype("auto", cuda) == torch.float16 and gpu_dtype("float32", cuda) == torch.float32
    with pytest.raises(ConfigError, match="no bfloat16 tensor cores"):
        gpu_dtype(torch.bfloat16, cuda)
    with pytest.raises(ConfigError, match="int8 runs on the CPU"):
        gpu_dtype("int8", cuda)
    cfg = dict(arch="cifar_resnet20", dataset="digits", out="o")
    assert _autocast_dtype(TrainConfig(**cfg), cuda) == torch.float16
    with pytest.raises(ConfigError, match="float16 or auto"):
        _autocast_dtype(TrainConfig(**cfg, precision="bfloat16"), cuda)
    with pytest.raises(ConfigError, match="float16 is for GPUs"):
        _autocast_dtype(TrainConfig(**cfg, precision="float16"), torch.device("cpu"))
    gpus(1, capability=(8, 0))
    assert gpu_dtype("auto", cuda) == torch.bfloat16 == _autocast_dtype(TrainConfig(**cfg), cuda)


def test_only_the_device_module_asks_torch_cuda():
    users = sorted(
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "resnet_zoo").rglob("*.py")
        if re.search(r"torch\.cuda\.", p.read_text())
    )
    assert users == ["resnet_zoo/device.py"]


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *args], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )


@pytest.mark.skipif(dev.cuda_available(), reason="checks the refusal on a machine without CUDA")
def test_every_command_refuses_a_missing_gpu_in_one_line_writing_nothing(tmp_path):
    out = tmp_path / "feats"
    for args in (
        ("predict", "cifar_resnet20", str(SAMPLES), "--device", "cuda"),
        ("features", "cifar_resnet20", str(SAMPLES), "--out", str(out), "--device", "cuda:1"),
        ("export", "cifar_resnet20", "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--device", "cuda"),
        ("bench", "cifar_resnet20", "--device", "cuda"),
        ("train", "cifar_resnet20", "--dataset", "digits", "--out", str(tmp_path / "run"), "--device", "cuda"),
        ("info", "cifar_resnet20", "--device", "cuda"),
    ):
        result = _cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "this machine has no CUDA device" in lines[0], (args, result.stderr)
    assert sorted(tmp_path.iterdir()) == []
    info = _cli("info", "--device", "--json")
    assert info.returncode == 0 and json.loads(info.stdout) == {"gpus": []}
    assert "no CUDA device" in _cli("info", "--device").stdout


@pytest.mark.parametrize("device", DEVICES)
def test_fast_path_on_each_device(device):
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
    fast = resnet_zoo.optimize_for_inference(model, device=device, dtype="float32")
    out = fast(x)
    assert out.device == x.device and out.dtype == torch.float32
    assert (out - ref).abs().max() / ref.abs().max() < 1e-3
    assert next(model.parameters()).device.type == "cpu"  # the caller's model stays
    half = resnet_zoo.optimize_for_inference(model, device=device, dtype="auto")
    cos = torch.nn.functional.cosine_similarity(half(x), ref).min()
    assert cos >= 0.999 and half.device.type == device
    maps = resnet_zoo.optimize_for_inference(resnet_zoo.create("cifar_resnet20", features_only=True), device=device)
    assert all(m.device == x.device and m.dtype == torch.float32 for m in maps(x))


@pytest.mark.parametrize("device", DEVICES)
def test_predict_and_features_on_each_device_match_the_cpu(device, tmp_path):
    from resnet_zoo.features import read_feature_set, write_feature_set

    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    ref, ref_paths = resnet_zoo.extract_features(model, [SAMPLES], progress=False, device="cpu")
    feats, paths = resnet_zoo.extract_features(model, [SAMPLES], progress=False, device=device)
    assert paths == ref_paths and feats.device.type == "cpu"
    assert torch.nn.functional.cosine_similarity(feats, ref).min() >= 0.999
    top = resnet_zoo.predict(model, [SAMPLES], top=1, device=device)
    assert [p.topk[0][0] for p in top] == [p.topk[0][0] for p in resnet_zoo.predict(model, [SAMPLES], top=1)]
    write_feature_set(model, [SAMPLES], tmp_path / "set", shard_size=4, progress=False, device=device)
    fs = read_feature_set(tmp_path / "set")
    assert fs.index["device"] == device and torch.nn.functional.cosine_similarity(fs.load()[0], ref).min() >= 0.999
    if dev.cuda_available():  # a resume on the other device is refused (needs both devices)
        other = "cuda" if device == "cpu" else "cpu"
        with pytest.raises(ConfigError, match=rf"device \({device} -> {other}\)"):
            write_feature_set(model, [SAMPLES], tmp_path / "set", shard_size=4, progress=False, device=other)


def test_the_gpu_batch_pipeline_normalises_as_the_cpu_one():
    """Workers hand uint8 crops to the device, which normalises them: the same numbers as the
    float path the CPU uses (Preprocess.__call__), bit for bit on the CPU."""
    from resnet_zoo.inference.images import Preprocess

    model = resnet_zoo.create("resnet18.tv_in1k")
    pre = Preprocess(model.pretrained_cfg.preprocessing)
    photo = next(iter(sorted(SAMPLES.glob("*.jpg"))))
    assert pre.uint8(photo).dtype == torch.uint8
    assert torch.equal(pre.normalize(pre.uint8(photo)[None])[0], pre(photo))


@pytest.mark.parametrize("device", DEVICES)
def test_device_bench_rows_on_each_device(device):
    from resnet_zoo.inference.device_bench import iter_device_bench

    (rows,) = list(
        iter_device_bench(
            ["cifar_resnet20"], torch.device(device), batch_sizes=(2,), iters=2, repeats=2, compile=False,
            peak_tflops=1.0,
        )
    )  # fmt: skip
    paths = [r.path for r in rows]
    half = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dev.fast_dtype(torch.device(device)))
    assert paths == ["resnet_zoo eager fp32", "resnet_zoo fast fp32"] + (
        [f"resnet_zoo fast {half}", f"resnet_zoo fast amp {half}"] if half else []
    )
    for r in rows:
        assert r.images_per_s > 0 and r.ms_per_batch > 0 and r.spread_pct >= 0 and r.device == device
        assert (r.peak_memory_mb is None) == (device == "cpu")


@pytest.mark.parametrize("device", DEVICES)
def test_compiled_fast_path_compiles_once_per_bucket(device):
    """compile=True: static shapes, batches padded to powers of two up to batch_size, larger
    ones in chunks: batches of 8, 8, 3, 5, 1, 20 compile the buckets 8, 4, 1 once each. A
    backend that counts the graphs it is given stands in for inductor (same torch.compile)."""
    from torch._dynamo import register_backend

    from resnet_zoo.inference.torch_path import bucket_of

    assert [bucket_of(n, 8) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]
    shapes = []

    @register_backend(name="resnet_zoo_counting")
    def counting(gm, example_inputs):
        shapes.append(tuple(example_inputs[0].shape)[0] if example_inputs else None)
        return gm.forward

    torch._dynamo.reset()
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    plain = resnet_zoo.optimize_for_inference(model, device=device, dtype="float32")
    fast = resnet_zoo.optimize_for_inference(
        model, device=device, dtype="float32", compile="resnet_zoo_counting", batch_size=8
    )
    g = torch.Generator().manual_seed(0)
    for n in (8, 8, 3, 5, 1, 20):
        x = torch.randn(n, 3, 32, 32, generator=g)
        out = fast(x)
        assert out.shape == (n, 10) and torch.allclose(out, plain(x), atol=1e-4, rtol=1e-4)
    assert sorted(set(shapes)) == [1, 4, 8] and len(shapes) == 3  # one graph per bucket, never again
    with pytest.raises(ConfigError, match="compile=True compiles the torch backend"):
        resnet_zoo.optimize_for_inference(model, device="cpu", compile=True, backend="onnxruntime")


def _jpegs(directory):
    """One file of each kind the batch decoder meets, from a real photo."""
    from PIL import Image

    photo = Image.open(next(iter(sorted(SAMPLES.glob("*.jpg"))))).convert("RGB").resize((640, 480), Image.BICUBIC)
    directory.mkdir()
    files = {}
    for name, save in {
        "baseline": lambda p: photo.save(p, quality=90),
        "baseline2": lambda p: photo.transpose(Image.FLIP_LEFT_RIGHT).save(p, quality=85),
        "progressive": lambda p: photo.save(p, quality=90, progressive=True),
        "greyscale": lambda p: photo.convert("L").save(p, quality=90),
        "cmyk": lambda p: photo.convert("CMYK").save(p, quality=90),
        "rotated": lambda p: photo.save(p, quality=90, exif=_exif_rotated()),
        "png": lambda p: photo.save(p.with_suffix(".png")),
    }.items():
        path = directory / f"{name}.jpg"
        save(path)
        files[name] = path if path.exists() else path.with_suffix(".png")
    files["corrupt"] = directory / "corrupt.jpg"
    files["corrupt"].write_bytes(files["baseline"].read_bytes()[:600])
    return files


def _exif_rotated():
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    return exif.tobytes()


def test_the_batch_jpeg_decoder_takes_baseline_jpegs_and_hands_the_rest_to_pillow(tmp_path):
    """--decode gpu's decoder, run here on the CPU (torchvision's decode_jpeg takes a device):
    baseline JPEGs are decoded in one call and resized there, within 3/255 of Pillow's crops
    on average; progressive, greyscale, CMYK, rotated and non-JPEG files go to Pillow, counted
    by reason; a truncated file is an error naming it."""
    from resnet_zoo.inference.device_decode import DeviceDecoder, RawFiles, collate_raw, decoded_batches, jpeg_layout
    from resnet_zoo.inference.images import Preprocess

    files = _jpegs(tmp_path / "jpegs")
    kinds = {name: jpeg_layout(path.read_bytes())[0] for name, path in files.items()}
    assert kinds == {
        "baseline": "baseline", "baseline2": "baseline", "progressive": "progressive", "greyscale": "greyscale",
        "cmyk": "cmyk", "rotated": "rotated", "png": "not a jpeg", "corrupt": "baseline",
    }  # fmt: skip
    pre = Preprocess(resnet_zoo.create("resnet18.tv_in1k").pretrained_cfg.preprocessing)
    decoder = DeviceDecoder(pre, torch.device("cpu"))
    paths = list(files.values())
    loader = torch.utils.data.DataLoader(RawFiles(paths), batch_size=len(paths), collate_fn=collate_raw)
    ((kept, batch, errors),) = list(decoded_batches(loader, decoder, paths))
    names = list(files)
    assert [names[i] for i in kept] == [n for n in names if n != "corrupt"] and batch.shape == (7, 3, 224, 224)
    assert len(errors) == 1 and names[errors[0][0]] == "corrupt" and "corrupt.jpg" in errors[0][1]
    assert decoder.decoded == 2 and decoder.fallbacks == {
        "progressive": 1, "greyscale": 1, "cmyk": 1, "rotated": 1, "not a jpeg": 1, "refused by the decoder": 1
    }  # fmt: skip
    for k, name in enumerate(n for n in names if n != "corrupt"):
        ref = pre(files[name])
        assert (batch[k] - ref).abs().mul(torch.tensor(pre.std).view(3, 1, 1) * 255).mean() < 3.0, name


def test_decode_gpu_needs_the_model_on_a_gpu(tmp_path):
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    with pytest.raises(ConfigError, match="--decode gpu decodes on the model's GPU, and this model runs on cpu"):
        resnet_zoo.predict(model, [SAMPLES], decode="gpu")
    with pytest.raises(ConfigError, match="decode must be one of"):
        resnet_zoo.extract_features(model, [SAMPLES], decode="nvjpeg")


@pytest.mark.skipif(not dev.cuda_available(), reason="no CUDA device on this machine (CI has none)")
def test_decode_gpu_features_match_pillows(tmp_path):
    from resnet_zoo.features import read_feature_set, write_feature_set

    files = _jpegs(tmp_path / "jpegs")
    files["corrupt"].unlink()
    model = resnet_zoo.create("resnet18").eval()
    ref, ref_paths = resnet_zoo.extract_features(model, [tmp_path / "jpegs"], progress=False, device="cpu")
    got, paths = resnet_zoo.extract_features(model, [tmp_path / "jpegs"], progress=False, device="cuda", decode="gpu")
    assert paths == ref_paths and torch.nn.functional.cosine_similarity(got, ref).min() >= 0.999
    write_feature_set(model, [tmp_path / "jpegs"], tmp_path / "set", progress=False, device="cuda", decode="gpu")
    assert read_feature_set(tmp_path / "set").index["decoder"] == "torchvision.io.decode_jpeg"


def test_gpu_backends_are_checked_before_anything_is_built(gpus, monkeypatch):
    """On a GPU: torch, onnxruntime's CUDA provider (float32) or auto; OpenVINO and int8 are the
    CPU's. Checked with a GPU monkeypatched in: each refusal comes before any work."""
    from resnet_zoo.inference import runtimes
    from resnet_zoo.inference.auto import _key

    gpus(1)
    model = resnet_zoo.create("cifar_resnet20")
    with pytest.raises(ConfigError, match="runs on the CPU; on cuda:0 use 'torch', 'onnxruntime' or 'auto'"):
        resnet_zoo.optimize_for_inference(model, device="cuda", backend="openvino")
    monkeypatch.setattr(runtimes, "ort_cuda_available", lambda: False)
    with pytest.raises(ConfigError, match="onnxruntime's CUDA provider in float32"):
        runtimes.build_runtime(model, "onnxruntime", torch.float32, device=torch.device("cuda", 0))
    monkeypatch.setattr(dev, "gpu_facts", lambda: [GpuFacts(0, "NVIDIA H100", (9, 0), 80 << 30, 132)])
    import resnet_zoo.inference.auto as auto

    monkeypatch.setattr(auto, "gpu_facts", dev.gpu_facts)
    assert _key(model, 64, torch.bfloat16, torch.device("cuda", 0)).startswith("cuda-NVIDIA-H100|cifar_resnet20-")


def test_the_byte_reader_refuses_a_fifo_without_opening_it(tmp_path):
    """--decode gpu's workers read bytes: a FIFO among the images is an error naming it, at once
    (opened, it would block the worker until a writer came)."""
    import os
    import threading

    from resnet_zoo.inference.device_decode import RawFiles

    os.mkfifo(tmp_path / "pipe.jpg")
    photo = next(iter(sorted(SAMPLES.glob("*.jpg"))))
    files = RawFiles([tmp_path / "pipe.jpg", photo])
    got: list = []
    reader = threading.Thread(target=lambda: got.extend([files[0], files[1]]), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading the FIFO blocked"
    (_, none, error), (_, data, ok) = got
    assert none is None and "pipe.jpg" in error and "FIFO" in error
    assert ok is None and bytes(data.numpy()) == photo.read_bytes()


def test_device_bench_on_a_cpu_without_fast_bf16_times_float32_only(fake_cpu):
    """An AVX2-only CPU (bfloat16 emulated): the bench's rows are float32 only (optimize_for_
    inference refuses bf16 there, and autocast to it only loses), the ratios against
    torchvision's eager float32."""
    from resnet_zoo.inference.device_bench import iter_device_bench

    pytest.importorskip("torchvision")
    fake_cpu("avx2")
    (rows,) = list(iter_device_bench(["resnet18"], torch.device("cpu"), batch_sizes=(1,), iters=1, repeats=1,
                                     compile=False, peak_tflops=1.0))  # fmt: skip
    assert [r.path for r in rows] == ["torchvision eager fp32", "resnet_zoo eager fp32", "resnet_zoo fast fp32"]
    assert rows[0].ratio_vs_torchvision == 1.0 and all(r.images_per_s > 0 for r in rows)
