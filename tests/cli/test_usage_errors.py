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
