"""Preprocessing with Pillow + torch equals torchvision's transforms on real photos."""

import io

import pytest
import torch
from images import sample_photos
from PIL import Image

from resnet_zoo import InputError, create
from resnet_zoo.inference.images import Preprocess, load_image, to_tensor
from resnet_zoo.manifest import Preprocessing, load_manifest

T = pytest.importorskip("torchvision.transforms")

CONFIGS = {
    "tv_in1k": Preprocessing(224, 0.875, "bilinear"),
    "tv2_in1k": Preprocessing(224, 0.965, "bilinear"),
    "a1_in1k": Preprocessing(224, 0.95, "bicubic"),
    "small_nearest": Preprocessing(32, 1.0, "nearest", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
}
MODES = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
    "nearest": T.InterpolationMode.NEAREST,
}


def _torchvision(config: Preprocessing):
    return T.Compose(
        [
            T.Resize(int(config.input_size / config.crop_pct), interpolation=MODES[config.interpolation]),
            T.CenterCrop(config.input_size),
            T.ToTensor(),
            T.Normalize(config.mean, config.std),
        ]
    )


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
    torch.testing.assert_close(composited[:, 100:, 100:], to_tensor(Image.open(photos["chelsea.png"]))[:, 100:, 100:])
    gif = load_image(photos["no_time_for_that_tiny.gif"])
    assert gif.mode == "RGB"
    # 16-bit: the camera scaled to 0..65535 reads back as the 8-bit camera.
    camera = Image.open(photos["camera.png"])
    wide = Image.frombytes(
        "I;16",
        camera.size,
        (torch.frombuffer(bytearray(camera.tobytes()), dtype=torch.uint8).to(torch.int32) * 257)
        .to(torch.int16)
        .numpy()
        .tobytes(),
    )
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


def parity_photos(directory):
    """Real photos as files of several sizes: the samples as they ship (427x640 up to 600x400,
    JPEG and PNG), chelsea (451x300) as a JPEG, and three samples upscaled (bicubic) to JPEGs
    of 1200x800, 4000x2667 and 4200x2800."""
    photos = {
        n: p for n, p in sample_photos().items() if n not in ("camera.png", "logo.png") and n.endswith((".jpg", ".png"))
    }
    files = list(photos.values())
    chelsea = Image.open(photos["chelsea.png"]).convert("RGB")
    chelsea.save(directory / "chelsea_451x300.jpg", quality=90)
    files.append(directory / "chelsea_451x300.jpg")
    for name, path in sorted(photos.items())[:3]:
        img = Image.open(path).convert("RGB")
        for size in ((1200, 800), (4000, 2667), (4200, 2800)):
            out = directory / f"{name.split('.')[0]}_{size[0]}x{size[1]}.jpg"
            img.resize(size, Image.BICUBIC).save(out, quality=90)
            files.append(out)
    return files


def pixel_and_feature_parity(files, config, *, fast_decode=False):
    """(max, mean) absolute pixel difference in 1/255 units, and the smallest cosine of random
    resnet50 features, between Preprocess(path) and torchvision's transforms of
    Image.open(path).convert("RGB")."""
    import resnet_zoo

    ours, theirs = Preprocess(config, fast_decode=fast_decode), _torchvision(config)
    std = torch.tensor(config.std).view(-1, 1, 1)
    a = torch.stack([ours(f) for f in files])
    b = torch.stack([theirs(Image.open(f).convert("RGB")) for f in files])
    diff = (a - b).abs() * std * 255
    model = resnet_zoo.create("resnet50").eval()
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(model(a), model(b)).min().item()
    return diff.max().item(), diff.mean().item(), cos


@pytest.mark.slow
@pytest.mark.parametrize("config", [CONFIGS["tv_in1k"], Preprocessing(32, 1.0, "bilinear")], ids=["224px", "32px"])
def test_from_a_file_equals_torchvisions_preprocessing_of_it(tmp_path, config):
    files = parity_photos(tmp_path)
    assert len(files) >= 12
    worst, mean, cos = pixel_and_feature_parity(files, config)
    assert worst == 0 and mean == 0 and cos == pytest.approx(1.0, abs=1e-6)
    # fast_decode: the reduced-scale decode of large JPEGs is faster, and not exact.
    worst, mean, cos = pixel_and_feature_parity(files, config, fast_decode=True)
    # Measured (Pillow 13, 16 photos): max 18/255, mean 0.12/255 (224 px) and 0.30/255 (32 px).
    assert 0 < worst <= 20 and mean < 0.5 and cos >= 0.9999


def test_fast_decode_reads_large_jpegs_at_a_reduced_scale(tmp_path):
    from images import large_photos

    from resnet_zoo.inference.images import DRAFT_FACTOR

    prep = Preprocess(Preprocessing(), fast_decode=True)
    for path in large_photos(tmp_path, n=2, size=(4000, 3000)):
        draft_img = load_image(path, min_size=DRAFT_FACTOR * prep.resize_to)
        assert min(draft_img.size) < 3000  # decoded at a reduced scale
        assert min(draft_img.size) >= DRAFT_FACTOR * prep.resize_to
        assert prep(path).shape == (3, 224, 224)
    assert "fast_decode=True" in repr(prep) and "fast_decode" not in repr(Preprocess(Preprocessing()))


def test_preprocess_takes_what_transforms_v2_takes(tmp_path):
    """A uint8 CHW tensor (read_image, v2.ToImage), a float one in [0, 1], an HWC array and a
    grey HW array give the pixels of the Pillow path."""
    import numpy as np

    tvio = pytest.importorskip("torchvision.io")
    v2 = pytest.importorskip("torchvision.transforms.v2")
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(path)
    prep = Preprocess(create("resnet18").pretrained_cfg.preprocessing)
    want = prep(str(path))
    pil = Image.open(path).convert("RGB")
    for image in (tvio.read_image(str(path)), v2.ToImage()(pil), v2.ToImage()(pil).float() / 255, np.asarray(pil)):
        assert torch.equal(prep(image), want), type(image)
    grey = Preprocess(create("resnet18", img_channels=1).pretrained_cfg.preprocessing, channels=1)
    assert torch.equal(grey(np.asarray(pil.convert("L"))), grey(pil.convert("L")))
    with pytest.raises(InputError, match="got Tensor of shape"):
        prep(torch.zeros(3, 8, 8, dtype=torch.int32))
    with pytest.raises(InputError, match=r"\[C, H, W\], got shape \[1, 3, 8, 8\]"):
        prep(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
