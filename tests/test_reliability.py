"""Every bad input, bad file and fault: a clear ResNetZooError, no foreign code run, nothing
half-written that a later load would trust. (The table in docs/errors.md points here.)"""

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import rel_err
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

import resnet_zoo
from resnet_zoo import (
    CheckpointError,
    ConfigError,
    DownloadError,
    InputError,
    ResNetZooError,
    UnknownModelError,
    create,
)
from resnet_zoo.pretrained import load_safetensors

TINY = "test_tiny_reliability"
TINY_CONFIG = resnet_zoo.ResNetConfig(
    n_blocks=(1, 1), n_channels=(4, 8), first_kernel_size=3, conv_bias=False, stem_act=True, num_classes=3
)


@pytest.fixture(scope="module", autouse=True)
def tiny_arch():
    resnet_zoo.register_model(TINY, TINY_CONFIG, input_size=16, overwrite=True)
    yield
    resnet_zoo.registry._REGISTRY.pop(TINY, None)


@pytest.fixture(scope="module")
def tiny_bytes(tiny_arch):
    torch.manual_seed(0)
    return save(resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict())


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- Files -----------------------------------------------------------------------------------


def test_truncated_safetensors(tmp_path, tiny_bytes):
    for cut in (3, 8, 20, len(tiny_bytes) // 2, len(tiny_bytes) - 1):
        path = _write(tmp_path / f"cut{cut}.safetensors", tiny_bytes[:cut])
        with pytest.raises(CheckpointError, match=str(path.name)):
            create(TINY, pretrained=path)


def test_header_length_beyond_the_file_or_absurd(tmp_path, tiny_bytes):
    body = tiny_bytes[8:]
    with pytest.raises(CheckpointError, match="header claims"):
        load_safetensors(_write(tmp_path / "a.safetensors", struct.pack("<Q", len(body) + 10) + body))
    huge = struct.pack("<Q", 2**60) + b"{" + b" " * 100
    with pytest.raises(CheckpointError, match="header claims"):
        load_safetensors(_write(tmp_path / "b.safetensors", huge))
    big = b"{" + b" " * (17 * 1024 * 1024) + b"}"
    with pytest.raises(CheckpointError, match="exceeds"):
        load_safetensors(_write(tmp_path / "c.safetensors", struct.pack("<Q", len(big)) + big))


@pytest.mark.parametrize(
    "kind, match",
    [
        ("zip", "zip archive"),
        ("pickle", "pickle"),
        ("html", "HTML"),
        ("lfs", "git-lfs pointer"),
    ],
)
def test_foreign_files_under_a_safetensors_name_are_named_and_never_run(tmp_path, kind, match):
    marker = tmp_path / "executed"
    path = tmp_path / "model.safetensors"
    if kind == "zip":
        torch.save({"conv.weight": torch.zeros(1), "x": Payload(marker)}, path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"x": Payload(marker)}, protocol=2))
    elif kind == "html":
        path.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>" + " " * 64)
    else:
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 1234\n")
    with pytest.raises(CheckpointError, match=match):
        create(TINY, pretrained=path)
    # The same file as a save_pretrained directory's weights, through from_pretrained:
    d = tmp_path / "dir"
    d.mkdir()
    shutil.copy(path, d / "model.safetensors")
    (d / "config.json").write_text(json.dumps({"library": "resnet_zoo", "config": TINY_CONFIG.to_dict()}))
    with pytest.raises(CheckpointError, match=match):
        resnet_zoo.ResNet.from_pretrained(d)
    assert not marker.exists()


def test_pickle_payload_through_every_entry_point_never_runs(tmp_path):
    marker = tmp_path / "executed"
    pth = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "evil": Payload(marker)}, pth)
    with pytest.raises(CheckpointError, match="resnet-zoo convert"):
        create(TINY, pretrained=pth)  # create reads safetensors only
    from resnet_zoo.factory import convert_checkpoint

    with pytest.raises(CheckpointError, match="weights_only=True"):
        convert_checkpoint(pth, TINY, tmp_path / "out")
    legacy = _write(tmp_path / "legacy.pt", pickle.dumps({"evil": Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="weights_only=True"):
        convert_checkpoint(legacy, TINY, tmp_path / "out")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_zoo",
            "convert",
            str(tmp_path / "legacy.pt"),
            "--arch",
            "resnet18",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "weights_only" in result.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def _raw_safetensors(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    "header, data",
    [
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),  # overlapping
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),  # beyond the data
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),  # shape vs size
        ({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),  # unknown dtype
    ],
)
def test_bad_offsets_and_dtypes(tmp_path, header, data):
    with pytest.raises(CheckpointError):
        load_safetensors(_write(tmp_path / "x.safetensors", _raw_safetensors(header, data)))


def test_too_many_tensors_is_capped(tmp_path):
    header = {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for i in range(20_001)}
    with pytest.raises(CheckpointError, match="20000"):
        load_safetensors(_write(tmp_path / "many.safetensors", _raw_safetensors(header, b"")))


def test_double_weights_are_cast_and_integer_weights_refused(tmp_path, caplog):
    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    save_file({k: v.double() if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "d.safetensors")
    with caplog.at_level("INFO", logger="resnet_zoo"):
        model = create(TINY, pretrained=tmp_path / "d.safetensors")
    assert model.conv.weight.dtype == torch.float32 and "float64" in caplog.text
    for bad in (torch.int32, torch.bool):
        save_file({k: (v.to(bad) if k == "conv.weight" else v) for k, v in sd.items()}, tmp_path / "i.safetensors")
        with pytest.raises(CheckpointError, match=f"conv.weight has dtype {bad}"):
            create(TINY, pretrained=tmp_path / "i.safetensors")


def test_missing_unexpected_and_partly_prefixed_keys(tmp_path):
    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    missing = {k: v for k, v in sd.items() if not k.startswith("blocks.1.conv2")}
    save_file(missing, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.conv2\.weight"):
        create(TINY, pretrained=tmp_path / "m.safetensors")
    extra = {**sd, "blocks.1.bn3.weight": torch.ones(8)}
    save_file(extra, tmp_path / "u.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.1\.bn3\.weight"):
        create(TINY, pretrained=tmp_path / "u.safetensors")
    prefixed = {("module." + k if k.startswith("blocks") else k): v for k, v in sd.items()}
    save_file(prefixed, tmp_path / "p.safetensors")
    with pytest.raises(CheckpointError, match="'module' prefix"):
        create(TINY, pretrained=tmp_path / "p.safetensors")
    whole = {"module." + k: v for k, v in sd.items()}  # every key prefixed: stripped, loads
    save_file(whole, tmp_path / "w.safetensors")
    assert create(TINY, pretrained=tmp_path / "w.safetensors") is not None


def test_another_architecture_and_non_finite(tmp_path):
    save_file(resnet_zoo.create("cifar_resnet20").state_dict(), tmp_path / "r20.safetensors")
    with pytest.raises(CheckpointError, match="deeper architecture"):
        create("cifar_resnet14", pretrained=tmp_path / "r20.safetensors")
    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    for bad in (float("nan"), float("inf")):
        sd["fc.bias"] = torch.tensor([0.0, bad, 1.0])
        save_file(sd, tmp_path / "nan.safetensors")
        with pytest.raises(CheckpointError, match=r"fc\.bias has 1 NaN/Inf"):
            create(TINY, pretrained=tmp_path / "nan.safetensors")


# --- Downloads --------------------------------------------------------------------------------

R18 = "timm/resnet18.tv_in1k"


@pytest.fixture(scope="module")
def r18():
    tvm = pytest.importorskip("torchvision.models")
    torch.manual_seed(3)
    model = tvm.resnet18().eval()
    return model, save(model.state_dict())


def test_offline_with_a_cold_cache_names_the_variable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE=1.*HF_HUB_CACHE"):
        create("resnet18", pretrained=True)


def test_unknown_revision_file_and_repo_are_unknown_weights(hub, r18):
    hub.add_file(R18, "model.safetensors", r18[1])
    with pytest.raises(UnknownModelError, match="revision"):
        create("resnet18", pretrained="hf-hub:timm/resnet18.tv_in1k@nope")
    with pytest.raises(UnknownModelError, match="does not exist"):
        create("resnet18", pretrained="hf-hub:nobody/nothing")


def _child(code: str, env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_four_processes_at_once_download_once(hub, r18, tmp_path):
    hub.add_file(R18, "model.safetensors", r18[1], fault="slow")
    go = tmp_path / "go"
    code = (
        "import os, time, torch, resnet_zoo\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "m = resnet_zoo.create('resnet18', pretrained=True).eval()\n"
        "torch.manual_seed(0)\n"
        "print(float(m(torch.randn(1, 3, 64, 64)).sum()))\n"
    )
    env = dict(os.environ)
    procs = [_child(code, env) for _ in range(4)]
    time.sleep(3)  # let all four import torch and wait at the line
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in outs]
    values = {o.strip() for o, _ in outs}
    assert len(values) == 1
    model, _ = r18
    torch.manual_seed(0)
    with torch.no_grad():
        assert abs(float(model(torch.randn(1, 3, 64, 64)).sum()) - float(values.pop())) < 1e-3
    assert hub.gets("model.safetensors") == 1


def test_a_killed_download_leaves_nothing_trusted(hub, r18, tmp_path, monkeypatch):
    hub.add_file(R18, "model.safetensors", r18[1], fault="slow")
    proc = _child("import resnet_zoo; resnet_zoo.create('resnet18', pretrained=True)", dict(os.environ))
    deadline = time.time() + 120
    while hub.gets("model.safetensors") == 0 and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    cache = Path(os.environ["HF_HUB_CACHE"])
    assert not [p for p in cache.glob("models--*/snapshots/*/*") if p.resolve().is_file()]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError):
        create("resnet18", pretrained=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.set_fault(R18, "model.safetensors", None)
    model = create("resnet18", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(model(x), r18[0](x)) <= 1e-5


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def test_read_only_cache_suggests_hf_hub_cache(hub, r18, tmp_path, monkeypatch):
    cache = tmp_path / "ro-cache"
    _mount_tmpfs(cache, "ro,size=1m")  # a really read-only file system (root ignores chmod)
    try:
        hub.add_file(R18, "model.safetensors", r18[1])
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        with pytest.raises(DownloadError, match="read-only.*HF_HUB_CACHE"):
            create("resnet18", pretrained=True)
    finally:
        subprocess.run(["umount", str(cache)], check=False)


def test_disk_full_is_a_clear_error_and_leaves_nothing_trusted(hub, r18, tmp_path, monkeypatch):
    mnt = tmp_path / "small"
    _mount_tmpfs(mnt, "size=1m")
    try:
        hub.add_file(R18, "model.safetensors", r18[1])
        monkeypatch.setenv("HF_HUB_CACHE", str(mnt))
        with pytest.raises(DownloadError, match="no space left"):
            create("resnet18", pretrained=True)
        assert not [p for p in mnt.glob("models--*/snapshots/*/*") if p.resolve().is_file()]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- Inputs -------------------------------------------------------------------------------------


def test_input_checks():
    m = create(TINY).eval()
    for x, match in [
        (torch.randn(3, 16, 16), "4-d"),
        (torch.randn(1, 3, 16, 16, 1), "4-d"),
        (torch.randn(1, 2, 16, 16), "input channels"),
        (torch.ones(1, 3, 16, 16, dtype=torch.int64), "floating-point"),
        (torch.randn(1, 3, 0, 16), "empty spatial"),
        ([[1.0]], "torch.Tensor"),
    ]:
        with pytest.raises(InputError, match=match):
            m(x)
    assert m(torch.randn(0, 3, 16, 16)).shape == (0, 3)
    assert [t.shape[0] for t in m.forward_intermediates(torch.randn(0, 3, 16, 16))] == [0, 0, 0]


def test_nan_input_stays_in_its_own_row():
    m = create(TINY).eval()
    x = torch.randn(3, 3, 16, 16)
    x[1, 0, 4, 4] = float("nan")
    with torch.no_grad():
        out = m(x)
        clean = m(x[[0, 2]])
    assert torch.isnan(out[1]).all()
    torch.testing.assert_close(out[[0, 2]], clean)


def test_every_error_is_a_resnet_zoo_error_with_a_builtin_parent():
    assert issubclass(ConfigError, ValueError) and issubclass(UnknownModelError, KeyError)
    assert issubclass(CheckpointError, ValueError) and issubclass(DownloadError, OSError)
    for cls in (ConfigError, UnknownModelError, CheckpointError, DownloadError, InputError):
        assert issubclass(cls, ResNetZooError)


# --- Property and fuzz tests ------------------------------------------------------------------------


@st.composite
def configs(draw):
    n = draw(st.integers(1, 3))
    channels = sorted(draw(st.lists(st.integers(1, 12), min_size=n, max_size=n)))
    bottleneck = draw(st.booleans())
    groups = 1
    bottlenecks = None
    if bottleneck:
        groups = draw(st.sampled_from([1, 2]))
        bottlenecks = [groups * draw(st.integers(1, 4)) for _ in range(n)]
    return dict(
        n_blocks=draw(st.lists(st.integers(1, 2), min_size=n, max_size=n)),
        n_channels=channels,
        bottlenecks=bottlenecks,
        img_channels=draw(st.integers(1, 4)),
        first_kernel_size=draw(st.sampled_from([1, 3, 5, 7])),
        stem_stride=draw(st.integers(1, 2)),
        stem_pool=draw(st.booleans()),
        stem_act=draw(st.booleans()),
        conv_bias=draw(st.booleans()),
        groups=groups,
        shortcut=draw(st.sampled_from(["projection", "conv3x3", "zero_pad"])),
        stage_strides=draw(st.one_of(st.none(), st.lists(st.integers(1, 2), min_size=n, max_size=n))),
    )


@settings(max_examples=150, deadline=None)
@given(cfg=configs(), batch=st.integers(0, 3), size=st.integers(1, 24))
def test_any_valid_config_builds_and_gives_the_right_shape(cfg, batch, size):
    model = resnet_zoo.ResNetBase(**cfg).eval()
    x = torch.randn(batch, cfg["img_channels"], size, size)
    with torch.no_grad():
        out = model(x)
        maps = model.forward_intermediates(x)
    assert out.shape == (batch, cfg["n_channels"][-1])
    assert [t.shape[1] for t in maps] == [i.channels for i in model.feature_info]


_ST_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _header(blob: bytes) -> tuple[int, dict]:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)  # free-form strings: not weights
    return n, header


def _load_bytes(tmp_path: Path, data: bytes, reference: bytes) -> None:
    """Loading ``data`` either raises a ResNetZooError, or yields exactly what the bytes say:
    the reference's header (names, dtypes, shapes, offsets) and, for every tensor, the values
    decoded here from the file's own data region, bit for bit. Corrupt bytes never load as
    something else silently."""
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    try:
        model = create(TINY, pretrained=path)
    except ResNetZooError:
        return
    n, header = _header(data)
    assert header == _header(reference)[1], "a file with another header loaded without an error"
    state = model.state_dict()
    assert set(state) == set(header)
    body = data[8 + n :]
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        raw = torch.frombuffer(bytearray(body[start:end]), dtype=torch.uint8)
        expected = raw.view(_ST_DTYPES[entry["dtype"]]).reshape(entry["shape"])
        assert torch.equal(
            state[name].view(torch.uint8) if state[name].ndim else state[name],
            expected.view(torch.uint8) if expected.ndim else expected,
        ), name


@settings(max_examples=1500, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_safetensors_only_raise_resnet_zoo_errors(tmp_path, tiny_bytes, data):
    blob = bytearray(tiny_bytes)
    (n_header,) = struct.unpack("<Q", tiny_bytes[:8])
    for _ in range(data.draw(st.integers(1, 6))):
        action = data.draw(st.sampled_from(["flip", "flip_header", "truncate", "extend", "length"]))
        if action in ("flip", "flip_header") and blob:
            hi = min(len(blob) - 1, 8 + n_header) if action == "flip_header" else len(blob) - 1
            blob[data.draw(st.integers(0, hi))] = data.draw(st.integers(0, 255))
        elif action == "truncate":
            del blob[data.draw(st.integers(0, len(blob))) :]
        elif action == "extend":
            blob += data.draw(st.binary(max_size=64))
        elif len(blob) >= 8:
            blob[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    _load_bytes(tmp_path, bytes(blob), tiny_bytes)


@settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_bytes_only_raise_resnet_zoo_errors(tmp_path, tiny_bytes, raw):
    _load_bytes(tmp_path, raw, tiny_bytes)


@settings(max_examples=800, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.dictionaries(
        st.sampled_from(["conv.weight", "fc.bias", "bn.weight", "x", "__metadata__"]),
        st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(
                    ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "ZZ", ""]
                ),
                "shape": st.lists(st.integers(-2, 2**40), max_size=4),
                "data_offsets": st.lists(st.integers(-1, 2**40), min_size=0, max_size=3),
            }
        ),
        max_size=4,
    ),
    data=st.binary(max_size=128),
)
def test_structured_bad_headers_only_raise_resnet_zoo_errors(tmp_path, tiny_bytes, header, data):
    _load_bytes(tmp_path, _raw_safetensors(header, data), tiny_bytes)


def test_the_fuzz_check_fails_on_a_silent_misread(tmp_path, tiny_bytes, monkeypatch):
    """_load_bytes is not vacuous: a loader that returned other values would fail it."""
    _load_bytes(tmp_path, tiny_bytes, tiny_bytes)  # the intact file loads as itself
    real = resnet_zoo.pretrained.fit.load_safetensors

    def misread(path):
        tensors, meta = real(path)
        return {k: (v + 1 if v.is_floating_point() else v) for k, v in tensors.items()}, meta

    monkeypatch.setattr("resnet_zoo.pretrained.fit.load_safetensors", misread)
    with pytest.raises(AssertionError):
        _load_bytes(tmp_path, tiny_bytes, tiny_bytes)
