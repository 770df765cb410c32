"""Preprocessing with Pillow + torch equals torchvision's transforms on real photos."""

import io

import pytest
import torch
from PIL import Image

from resnet_zoo import InputError
from resnet_zoo.manifest import Preprocessing, load_manifest
from resnet_zoo.transforms import Preprocess, load_image, to_tensor

from images import sample_photos

T = pytest.importorskip("torchvision.transforms")

CONFIGS = {
    "tv_in1k": Preprocessing(224, 0.875, "bilinear"),
    "tv2_in1k": Preprocessing(224, 0.965, "bilinear"),
    "a1_in1k": Preprocessing(224, 0.95, "bicubic"),
    "small_nearest": Preprocessing(32, 1.0, "nearest", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
}
MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
         "nearest": T.InterpolationMode.NEAREST}


def _torchvision(config: Preprocessing):
    return T.Compose([
        T.Resize(int(config.input_size / config.crop_pct), interpolation=MODES[config.interpolation]),
        T.CenterCrop(config.input_size),
        T.ToTensor(),
        T.Normalize(config.mean, config.std),
    ])


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_matches_torchvision_within_one_level(config_name):
    config = CONFIGS[config_name]
    ours, theirs = Preprocess(config), _torchvision(config)
    std = torch.tensor(config.std).view(-1, 1, 1)
    for name, path in sample_photos().items():
        rgb = load_image(path)
        a, b = ours(rgb), theirs(rgb)
        assert a.shape == b.shape == (3, config.input_size, config.input_size), name
        assert ((a - b).abs() * std).max().item() <= 1 / 255, name


def test_manifest_preprocessing_is_the_torchvision_recipe():
    # tv_in1k: Resize(256) + CenterCrop(224), the recipe torchvision documents for V1 weights.
    p = load_manifest()["resnet50.tv_in1k"].preprocessing
    assert Preprocess(p).resize_to == 256
    assert Preprocess(load_manifest()["resnet50.tv2_in1k"].preprocessing).resize_to == 232


def test_grey_rgba_palette_and_16_bit():
    photos = sample_photos()
    grey = load_image(photos["camera.png"])
    assert grey.mode == "RGB"
    t = to_tensor(grey)
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    assert Image.open(photos["logo.png"]).mode == "RGBA"
    assert load_image(photos["logo.png"]).mode == "RGB"
    # A photo with a fully transparent square over black pixels: the square reads as white paper.
    rgba = Image.open(photos["chelsea.png"]).convert("RGBA")
    rgba.paste((0, 0, 0, 0), (10, 10, 60, 60))
    composited = to_tensor(load_image(rgba))
    assert torch.all(composited[:, 10:60, 10:60] == 1.0)
    torch.testing.assert_close(composited[:, 100:, 100:],
                               to_tensor(Image.open(photos["chelsea.png"]))[:, 100:, 100:])
    gif = load_image(photos["no_time_for_that_tiny.gif"])
    assert gif.mode == "RGB"
    # 16-bit: the camera scaled to 0..65535 reads back as the 8-bit camera.
    camera = Image.open(photos["camera.png"])
    wide = Image.frombytes("I;16", camera.size,
                           (torch.frombuffer(bytearray(camera.tobytes()), dtype=torch.uint8)
                            .to(torch.int32) * 257).to(torch.int16).numpy().tobytes())
    buf = io.BytesIO()
    wide.save(buf, format="PNG")
    buf.seek(0)
    back = to_tensor(load_image(Image.open(buf), channels=1))
    assert (back - to_tensor(camera)).abs().max().item() <= 1 / 255


def test_exif_orientation_is_respected(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="notes.png"):
        load_image(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")


def test_single_channel_preprocessing():
    photos = sample_photos()
    p = Preprocess(Preprocessing(28, 1.0, "bilinear", mean=(0.5,), std=(0.5,)), channels=1)
    t = p(photos["chelsea.png"])
    assert t.shape == (1, 28, 28) and -1.0 <= t.min() and t.max() <= 1.0


def test_draft_decoding_of_large_jpegs_stays_within_1_255_of_the_full_decode(tmp_path):
    from images import large_photos

    from resnet_zoo.transforms import DRAFT_FACTOR

    prep = Preprocess(Preprocessing())
    for path in large_photos(tmp_path, n=3, size=(4000, 3000)):
        with Image.open(path) as img:
            full_img = img.convert("RGB")
            full_img.load()
        full = to_tensor(prep.resize_and_crop(full_img))
        draft_img = load_image(path, min_size=DRAFT_FACTOR * prep.resize_to)
        assert min(draft_img.size) < 3000  # decoded at a reduced scale
        assert min(draft_img.size) >= DRAFT_FACTOR * prep.resize_to
        draft = to_tensor(prep.resize_and_crop(draft_img))
        assert (full - draft).abs().max().item() <= 1 / 255 + 1e-6
        # Preprocess uses it.
        x = prep(path)
        assert ((x * prep.std + prep.mean) - full).abs().max().item() <= 1 / 255 + 1e-6
