"""Bad safetensors files and foreign pickles: a one-line CheckpointError naming the file; a
pickle's payload never runs."""

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_CONFIG, raw_safetensors
from safetensors.torch import save_file

import resnet_zoo
from resnet_zoo import (
    CheckpointError,
    create,
)
from resnet_zoo.pretrained import load_safetensors

pytestmark = pytest.mark.usefixtures("tiny_arch")  # the tiny architecture is registered for these tests


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


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


@pytest.mark.slow
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
        load_safetensors(_write(tmp_path / "x.safetensors", raw_safetensors(header, data)))


def test_too_many_tensors_is_capped(tmp_path):
    header = {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for i in range(20_001)}
    with pytest.raises(CheckpointError, match="20000"):
        load_safetensors(_write(tmp_path / "many.safetensors", raw_safetensors(header, b"")))


def test_double_weights_are_cast_and_integer_weights_refused(tmp_path, caplog):
    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    save_file({k: v.double() if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "d.safetensors")
    with caplog.at_level("INFO", logger="resnet_zoo"):
        model = create(TINY, pretrained=tmp_path / "d.safetensors")
    assert model.conv1.weight.dtype == torch.float32 and "float64" in caplog.text
    for bad in (torch.int32, torch.bool):
        save_file({k: (v.to(bad) if k == "conv1.weight" else v) for k, v in sd.items()}, tmp_path / "i.safetensors")
        with pytest.raises(CheckpointError, match=f"conv1.weight has dtype {bad}"):
            create(TINY, pretrained=tmp_path / "i.safetensors")


def test_missing_unexpected_and_partly_prefixed_keys(tmp_path):
    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    missing = {k: v for k, v in sd.items() if not k.startswith("layer2.0.conv2")}
    save_file(missing, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys: layer2\.0\.conv2\.weight"):
        create(TINY, pretrained=tmp_path / "m.safetensors")
    extra = {**sd, "layer2.0.bn3.weight": torch.ones(8)}
    save_file(extra, tmp_path / "u.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected keys: layer2\.0\.bn3\.weight"):
        create(TINY, pretrained=tmp_path / "u.safetensors")
    prefixed = {("module." + k if k.startswith("layer") else k): v for k, v in sd.items()}
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


@pytest.mark.slow  # writes a 2 GiB entry through zlib
def test_a_pth_with_compressed_entries_is_refused_before_inflating(tmp_path):
    """#36 case 13: a deflated zip entry (1.5 MB that inflates to 512 MB) was inflated by
    torch.load before anything was checked. Here 2 MB inflate to 2 GiB, refused under a 3 GB
    address-space cap, where inflating it beside torch would not fit."""
    import zipfile

    from resnet_zoo.factory import convert_checkpoint

    good = tmp_path / "good.pth"
    torch.save({"fc.weight": torch.zeros(4, 4)}, good)
    bomb = tmp_path / "bomb.pth"
    zeros = bytes(16 << 20)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            if entry.filename.endswith("/data/0"):  # the tensor's storage, now 2 GiB of zeros
                with dst.open(entry.filename, "w", force_zip64=True) as out:
                    for _ in range(128):
                        out.write(zeros)
            else:
                dst.writestr(entry.filename, src.read(entry))
    assert bomb.stat().st_size < 4_000_000
    code = (
        "import resource, sys\n"
        "from resnet_zoo.pretrained.files import read_checkpoint\n"  # torch first: its threads need room
        "from resnet_zoo import CheckpointError\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        f"try:\n    read_checkpoint({str(bomb)!r})\nexcept CheckpointError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "is compressed" in done.stdout and "torch.save never compresses" in done.stdout, done.stderr
    with pytest.raises(CheckpointError, match="is compressed"):
        convert_checkpoint(bomb, TINY, tmp_path / "out")


@pytest.mark.parametrize("kind", ["sparse", "meta"])
def test_a_sparse_or_meta_weight_in_a_pth_is_named(tmp_path, kind):
    """#36 case 23: a sparse or meta-device fc.weight raised a raw RuntimeError from convert."""
    from resnet_zoo.factory import convert_checkpoint

    sd = resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict()
    sd["fc.weight"] = sd["fc.weight"].to_sparse() if kind == "sparse" else torch.empty(3, 8, device="meta")
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="'fc.weight' is a .*(sparse|meta)"):
        convert_checkpoint(path, TINY, tmp_path / "out")
