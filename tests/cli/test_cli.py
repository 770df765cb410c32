"""The resnet-zoo command."""

import json
import subprocess
import sys

import pytest

import resnet_zoo
from resnet_zoo.cli import main


def test_list(capsys):
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == resnet_zoo.list_models()
    assert main(["list", "cifar_resnet1*"]) == 0
    assert capsys.readouterr().out.split() == ["cifar_resnet14", "cifar_resnet110", "cifar_resnet1202"]


def test_info_json(capsys):
    assert main(["info", "resnet50", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 25_557_032
    assert round(info["macs"] / 1e9, 2) == 4.09  # torchvision's published 4.09 "GFLOPS"
    assert [m["channels"] for m in info["feature_maps"]] == [64, 256, 512, 1024, 2048]
    assert resnet_zoo.ResNetConfig.from_dict(info["config"]) == resnet_zoo.get_config("resnet50")


def test_info_text(capsys):
    assert main(["info", "cifar_resnet20"]) == 0
    out = capsys.readouterr().out
    assert "269,722" in out and "zero_pad" in out


@pytest.mark.slow
def test_unknown_name_is_one_line_on_stderr_and_nonzero():
    result = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", "info", "resnet05"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "resnet50" in lines[0] and "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    with pytest.raises(resnet_zoo.UnknownModelError):
        main(["--debug", "info", "resnet05"])


def test_console_script_is_declared():
    text = (__import__("conftest").REPO_ROOT / "pyproject.toml").read_text()
    assert 'resnet-zoo = "resnet_zoo.cli:main"' in text


@pytest.mark.slow
def test_any_failure_is_one_line_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory is needed")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_zoo",
            "export",
            "cifar_resnet20",
            "--format",
            "torchscript",
            "--out",
            str(blocker / "x.pt"),
            "--pretrained",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "--debug" in result.stderr
