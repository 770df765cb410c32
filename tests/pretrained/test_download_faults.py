"""Download faults against the local Hub: offline with a cold cache, unknown revisions, four
processes at once, a killed download, a read-only cache, a full disk. Nothing half-written is
ever trusted."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import rel_err
from safetensors.torch import save

from resnet_zoo import (
    DownloadError,
    UnknownModelError,
    create,
)

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


@pytest.mark.slow
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


@pytest.mark.slow
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
