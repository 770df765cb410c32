"""Cross-cutting: every error is a ResNetZooError with a built-in parent, and the fuzzers (any
valid config builds; mutated, random and structured safetensors only raise ResNetZooError)."""

import json
import struct
from pathlib import Path

import pytest
import torch
from conftest import TINY, raw_safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

pytestmark = pytest.mark.usefixtures("tiny_arch")  # the tiny architecture is registered for these tests


def test_every_error_is_a_resnet_zoo_error_with_a_builtin_parent():
    assert issubclass(ConfigError, ValueError) and issubclass(UnknownModelError, KeyError)
    assert issubclass(CheckpointError, ValueError) and issubclass(DownloadError, OSError)
    for cls in (ConfigError, UnknownModelError, CheckpointError, DownloadError, InputError):
        assert issubclass(cls, ResNetZooError)


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


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(cfg=configs(), batch=st.integers(0, 3), size=st.integers(1, 24))
def test_any_valid_config_builds_and_gives_the_right_shape(cfg, batch, size):
    model = resnet_zoo.ResNetBase(**cfg).eval()
    x = torch.randn(batch, cfg["img_channels"], size, size)
    with torch.no_grad():
        out = model(x)
        maps = model.forward_intermediates(x, intermediates_only=True)
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


@pytest.mark.slow
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


@pytest.mark.slow
@settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_bytes_only_raise_resnet_zoo_errors(tmp_path, tiny_bytes, raw):
    _load_bytes(tmp_path, raw, tiny_bytes)


@pytest.mark.slow
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
    _load_bytes(tmp_path, raw_safetensors(header, data), tiny_bytes)


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
