"""Shared fixtures. No test here touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the parity measure of the conversion tests."""
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


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


@pytest.fixture
def hub(monkeypatch):
    """A local Hub (tests/hubserver.py) on 127.0.0.1, with HF_ENDPOINT pointed at it."""
    from hubserver import HubServer

    server = HubServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()
