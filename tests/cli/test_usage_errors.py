"""Usage errors of the command line: one line on stderr, exit status 1, nothing done."""

import pytest


def test_usage_errors_are_one_line_and_exit_1(capsys):
    from resnet_zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("resnet-zoo predict: error:")
    assert main(["export", "cifar_resnet20", "--format", "onnx", "--out", "x.onnx", "--input-size", "0"]) == 1
    assert "--input-size" in capsys.readouterr().err


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    from resnet_zoo.cli import main

    assert main(["export", "cifar_resnet20", "--format", "torchscript", "--out", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert main(["bench", "cifar_resnet20", "--plot", str(tmp_path), "--quiet"]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


def test_flags_after_the_command_missing_paths_and_skip_bad_are_said(tmp_path, capsys):
    """--debug and -v work after the command too; a missing path says "does not exist"; the
    unreadable-images error names --skip-bad; predict shows its progress bar on stderr."""
    from resnet_zoo import UnknownModelError
    from resnet_zoo.cli import main

    with pytest.raises(UnknownModelError):
        main(["info", "resnet05", "--debug"])  # the traceback, as with --debug before the command
    assert main(["list", "-v"]) == 0
    assert main(["info", "resnet05"]) == 1 and "resnet50" in capsys.readouterr().err
    assert main(["predict", "cifar_resnet20", str(tmp_path / "nothing.jpg")]) == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["predict", "cifar_resnet20", str(bad)]) == 1
    assert "--skip-bad" in capsys.readouterr().err
    good = tmp_path / "good.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(good)
    assert main(["predict", "cifar_resnet20", str(good), "--json"]) == 0
    captured = capsys.readouterr()
    assert "img" in captured.err and captured.out.lstrip().startswith("[")  # tqdm's bar on stderr
    assert main(["predict", "cifar_resnet20", str(good), "--json", "--quiet"]) == 0
    assert "img" not in capsys.readouterr().err
