"""Shared fixtures. No test here touches the network."""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save

import resnet_zoo

REPO_ROOT = Path(__file__).resolve().parents[1]

# Keep huggingface_hub away from the network and from the user's real cache in every test:
# set before anything imports it (it reads these once). Tests that need a Hub start the local
# server in hubserver.py and point HF_ENDPOINT at it.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("RESNET_ZOO_MANIFEST", None)


@pytest.fixture(autouse=True)
def _isolated_hub_cache(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
    monkeypatch.setenv("RESNET_ZOO_CACHE", str(tmp_path_factory.mktemp("resnet_zoo_cache")))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the parity measure of the conversion tests."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def reference_model1() -> torch.nn.Module:
    """Seed 001's model1, written from its printout (torchvision-style names)."""

    class Block(torch.nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(cout)
            self.relu = torch.nn.ReLU(inplace=True)
            self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = torch.nn.BatchNorm2d(cout)
            if stride != 1 or cin != cout:
                self.downsample = torch.nn.Sequential(
                    torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout)
                )

    class Model1(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn = torch.nn.BatchNorm2d(16)
            self.relu = torch.nn.ReLU(inplace=True)
            self.layer1 = torch.nn.Sequential(Block(16, 16, 1), Block(16, 16, 1))
            self.layer2 = torch.nn.Sequential(Block(16, 32, 2), Block(32, 32, 1))
            self.layer3 = torch.nn.Sequential(Block(32, 64, 2), Block(64, 64, 1))
            self.avg_pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc = torch.nn.Linear(64, 10)

    return Model1()


def labml_name(key: str, n_blocks) -> str:
    """A resnet_zoo (torchvision) key in the labml reference's flat layout, which was this
    project's own before it took torchvision's names; written here independently of the converter."""
    parts = key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return ".".join([parts[0][:-1], *parts[1:]])
    if not parts[0].startswith("layer"):
        return key
    stage, index, rest = int(parts[0][5:]), int(parts[1]), ".".join(parts[2:])
    rest = rest.replace("downsample.0.", "shortcut.conv.").replace("downsample.1.", "shortcut.bn.")
    return f"blocks.{sum(n_blocks[: stage - 1]) + index}.{rest}"


def perturb_bn(model: torch.nn.Module, generator: torch.Generator | None = None) -> None:
    """Give every batch norm non-trivial statistics and affine parameters (for parity tests)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set every batch norm's running statistics from ``x`` (as after training), then eval()."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(x)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.1
    return model.eval()


# What the real CPU runs fast decides which dtypes the tests can run here; test_cpu.py plays
# the other kinds of CPU through the fake_cpu fixture.
from resnet_zoo.cpu import CpuCapabilities, cpu_capabilities  # noqa: E402

needs_fast_bf16 = pytest.mark.skipif(
    not cpu_capabilities().fast_bf16,
    reason=f"{cpu_capabilities().kind} has no AVX512-BF16 or AMX: bf16 is refused here "
    "(the refusal is tested in test_cpu.py)",
)

FAKE_CPUS = {
    # An AMD EPYC with AVX2 only: oneDNN refuses bf16, no VNNI.
    "avx2": dict(
        model_name="AMD EPYC 7B12",
        family_model="family 23 model 49",
        isa="AVX2",
        avx2=True,
        avx512=False,
        avx512_bf16=False,
        amx=False,
        vnni=False,
        onednn=True,
        onednn_bf16=False,
    ),
    # A Skylake-class Xeon: AVX-512 but no BF16, so oneDNN emulates bf16 (slower than fp32).
    "avx512": dict(
        model_name="Intel(R) Xeon(R) Gold 6148",
        family_model="family 6 model 85",
        isa="AVX512",
        avx2=True,
        avx512=True,
        avx512_bf16=False,
        amx=False,
        vnni=False,
        onednn=True,
        onednn_bf16=True,
    ),
    # A Sapphire Rapids Xeon: AMX tiles for bf16 and int8.
    "amx": dict(
        model_name="Intel(R) Xeon(R) Platinum 8480+",
        family_model="family 6 model 143",
        isa="AVX512",
        avx2=True,
        avx512=True,
        avx512_bf16=True,
        amx=True,
        vnni=True,
        onednn=True,
        onednn_bf16=True,
    ),
}


@pytest.fixture
def fake_cpu(monkeypatch):
    """``fake_cpu("avx2" | "avx512" | "amx")``: make resnet_zoo believe it runs on that CPU."""
    import resnet_zoo.cpu

    def play(kind: str) -> CpuCapabilities:
        caps = CpuCapabilities(cores=2, threads=2, torch_version=torch.__version__, **FAKE_CPUS[kind])
        monkeypatch.setattr(resnet_zoo.cpu, "cpu_capabilities", lambda: caps)
        return caps

    return play


@pytest.fixture
def hub(monkeypatch):
    """A local Hub (tests/hubserver.py) on 127.0.0.1, with HF_ENDPOINT pointed at it."""
    from hubserver import HubServer

    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


HUB_TOKEN = "hf_local_test_token"


@pytest.fixture
def hub_up(hub, monkeypatch):
    """The local Hub, taking uploads with the token HUB_TOKEN: Xet off (the local Hub speaks LFS,
    as the Hub still does)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    return hub


# A user's home beside a Hub cache: what no hostile answer, cache or index may touch.
@dataclass
class Home:
    root: Path  # everything the test owns
    home: Path  # a user's home: the cache is home/.cache/hf
    cache: Path
    before: dict

    def tree(self, *skip: Path) -> dict:
        """Every path under root outside the cache (and ``skip``): bytes of files, link targets."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            if p == self.cache or self.cache in p.parents or any(p == s or s in p.parents for s in skip):
                continue
            out[str(p)] = (
                ("link", os.readlink(p))
                if p.is_symlink()
                else ("file", p.read_bytes())
                if p.is_file()
                else ("dir", None)
            )
        return out

    def untouched(self, *skip: Path) -> None:
        after = self.tree(*skip)
        assert after == self.before, {k for k in set(after) | set(self.before) if after.get(k) != self.before.get(k)}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    home = tmp_path / "home"
    cache = home / ".cache" / "hf"
    cache.mkdir(parents=True)
    (home / ".bashrc").write_bytes(b"alias ls='ls --color=auto'\n")
    (home / "notes.txt").write_bytes(b"my notes\n")
    (home / "model.safetensors").write_bytes(b"not weights: a user's own file\n")
    (tmp_path / "outside.bin").write_bytes(os.urandom(256))
    Image.new("RGB", (40, 40), (200, 30, 30)).save(home / "cat.png")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    h = Home(tmp_path, home, cache, {})
    h.before = h.tree()
    return h


# A tiny registered architecture and its weights, for tests of bad files and the fuzzers
# (request tiny_arch, or pytestmark = pytest.mark.usefixtures("tiny_arch")).
TINY = "test_tiny_reliability"


TINY_CONFIG = resnet_zoo.ResNetConfig(
    n_blocks=(1, 1), n_channels=(4, 8), first_kernel_size=3, conv_bias=False, stem_act=True, num_classes=3
)


@pytest.fixture(scope="module")
def tiny_arch():
    resnet_zoo.register_model(TINY, TINY_CONFIG, input_size=16, overwrite=True)
    yield
    resnet_zoo.registry._REGISTRY.pop(TINY, None)


@pytest.fixture(scope="module")
def tiny_bytes(tiny_arch):
    torch.manual_seed(0)
    return save(resnet_zoo.ResNet.from_config(TINY_CONFIG).state_dict())


def raw_safetensors(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
