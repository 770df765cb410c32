"""Bad images and bench settings: non-image formats, image bombs by shape, unconvertible
modes, timing settings. Each a ResNetZooError with one clear line."""

import pytest

import resnet_zoo
from resnet_zoo import ConfigError, create


def test_non_image_formats_never_reach_their_decoders(tmp_path):
    from resnet_zoo.errors import InputError
    from resnet_zoo.inference.images import load_image

    eps = tmp_path / "drawing.jpg"  # an EPS under an image name: Pillow would call Ghostscript
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(InputError, match="cannot read"):
        load_image(eps)


@pytest.mark.parametrize("size", [(2_000_000, 1), (1, 10_000_000)])
def test_image_bombs_by_shape_are_input_errors(tmp_path, size):
    from PIL import Image

    from resnet_zoo.errors import InputError
    from resnet_zoo.inference.images import Preprocess
    from resnet_zoo.manifest import Preprocessing

    path = tmp_path / "strip.png"
    Image.new("L", size).save(path)
    assert path.stat().st_size < 50_000
    with pytest.raises(InputError, match="aspect ratio"):
        Preprocess(Preprocessing())(path)
    model = create("cifar_resnet20")
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(good)
    feats, paths = resnet_zoo.extract_features(model, [good, path], skip_bad=True, progress=False)
    assert paths == [good] and feats.shape == (1, 64)


def test_an_unconvertible_mode_is_an_input_error_and_skippable(tmp_path):
    from PIL import Image

    from resnet_zoo.errors import InputError
    from resnet_zoo.inference.images import load_image

    path = tmp_path / "lab.tif"
    Image.new("LAB", (16, 16)).save(path)
    with pytest.raises(InputError, match="lab.tif"):
        load_image(path, channels=1)


def test_bench_settings_are_checked_before_anything_is_printed_or_timed(capsys):
    from resnet_zoo.cli import main
    from resnet_zoo.inference.bench import iter_bench

    for flag in ("--iters", "--repeats", "--batch-size"):
        assert main(["bench", "cifar_resnet20", flag, "0", "--quiet"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"{flag.lstrip('-').replace('-', '_')} must be a positive integer, got 0" in err
    with pytest.raises(ConfigError, match="peers must be"):
        iter_bench(["cifar_resnet20"], peers=("tensorrt",))  # at the call, not at the first row


def test_predict_of_an_empty_input_is_refused_not_a_scan_of_the_current_directory(tmp_path, monkeypatch, capsys):
    from PIL import Image

    from resnet_zoo.cli import main

    Image.new("RGB", (32, 32)).save(tmp_path / "here.png")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "cifar_resnet20", ""]) == 1
    err = capsys.readouterr().err
    assert "empty input" in err and len(err.strip().splitlines()) == 1
