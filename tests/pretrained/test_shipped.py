"""The shipped model cifar_resnet20.digits: accuracy in both polarities, offline use from a clone
and a wheel."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT, needs_fast_bf16

import resnet_zoo
from resnet_zoo.inference.images import Preprocess
from resnet_zoo.manifest import data_path, get_weights

TAG = "cifar_resnet20.digits"
SAMPLES = sorted(data_path("samples").glob("digit_*.png"))


@pytest.fixture(scope="module")
def model():
    return resnet_zoo.create(TAG, pretrained=True).eval()


def _held_out(model, inverted):
    pytest.importorskip("sklearn")
    from PIL import ImageOps

    from resnet_zoo.train.datasets import read_digits, split_holdout

    prep = Preprocess(model.pretrained_cfg.preprocessing, channels=1)
    # The published preprocessing, from a grey picture (dark ink on white, or inverted).
    data = read_digits(lambda img: prep(ImageOps.invert(img) if inverted else img))
    _, val = split_holdout(data, 0.2, seed=0)
    return val.images, val.labels


@pytest.fixture(scope="module")
def held_out(model):
    return _held_out(model, inverted=False)


def test_manifest_entry():
    spec = get_weights("cifar_resnet20", "digits")
    assert spec.name == TAG and spec.path and len(spec.sha256) == 64
    assert spec.preprocessing.input_size == 32
    assert TAG in resnet_zoo.list_models(pretrained=True)


@pytest.mark.parametrize("inverted", [False, True], ids=["ink-on-paper", "white-on-black"])
def test_held_out_accuracy_in_both_polarities_is_at_least_95_and_as_recorded(model, inverted):
    x, y = _held_out(model, inverted)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.95
    (recorded,) = [
        e for e in get_weights("cifar_resnet20", "digits").evaluations if ("inverted" in e["data"]) == inverted
    ]
    assert 100 * accuracy == pytest.approx(recorded["top1"], abs=0.01)
    card = (data_path(TAG) / "README.md").read_text()
    assert "resnet_zoo train cifar_resnet20 --dataset digits" in card and "--invert 0.5" in card


@needs_fast_bf16
def test_bf16_fast_path_on_trained_weights(model, held_out):
    x, y = held_out
    with torch.no_grad():
        ref = model(x)
    out = resnet_zoo.optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert F.cosine_similarity(out, ref).min().item() >= 0.999
    assert (out.argmax(1) == ref.argmax(1)).float().mean().item() >= 0.99


def test_bundled_grey_pngs_are_classified(model):
    assert len(SAMPLES) == 10
    preds = resnet_zoo.predict(model, SAMPLES, top=1)
    for p in preds:
        assert p.topk[0][1] == p.path.stem.split("_")[1], p


def test_shipped_file_is_verified(tmp_path, monkeypatch):
    manifest = json.loads((REPO_ROOT / "weights" / "manifest.json").read_text())
    manifest["weights"][TAG]["sha256"] = "1" * 64
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("RESNET_ZOO_MANIFEST", str(path))
    with pytest.raises(resnet_zoo.IntegrityError, match="reinstall"):
        resnet_zoo.create(TAG, pretrained=True)
    assert (data_path(TAG) / "model.safetensors").is_file()  # a shipped file is never deleted


CHECK = (
    "import os, resnet_zoo, torch\n"
    "m = {build}\n"
    "preds = resnet_zoo.predict(m, sorted(resnet_zoo.manifest.data_path('samples').glob('*.png')), top=1)\n"
    "print(resnet_zoo.__file__)\n"
    "print(' '.join(p.topk[0][1] for p in preds))\n"
)


@pytest.mark.slow
def test_offline_from_a_clone_through_torch_hub(tmp_path):
    code = CHECK.format(
        build=f"torch.hub.load({str(REPO_ROOT)!r}, 'cifar_resnet20', source='local', pretrained='digits').eval()"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 1 2 3 4 5 6 7 8 9"


@pytest.mark.slow
def test_offline_from_an_installed_wheel(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wheel = next((tmp_path / "dist").glob("resnet_zoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert f"resnet_zoo/_weights/{TAG}/model.safetensors" in names
    assert "resnet_zoo/_weights/samples/digit_7.png" in names
    assert "resnet_zoo/_weights/samples/cifar10/cat.jpg" in names
    assert "resnet_zoo/_weights/cifar_resnet56.cifar10/LICENSE" in names
    assert "resnet_zoo/_weights/cifar10_classes.txt" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = CHECK.format(build=f"resnet_zoo.create({TAG!r}, pretrained=True).eval()")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty"), PYTHONPATH=str(site))
    # -I would also drop the venv's packages; instead run from elsewhere and check the origin.
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    origin, labels = result.stdout.splitlines()[-2:]
    assert origin.startswith(str(site)), origin
    assert labels == "0 1 2 3 4 5 6 7 8 9"


def test_a_new_head_drops_the_old_class_names():
    for model in (
        resnet_zoo.ResNet.from_pretrained(data_path(TAG), num_classes=3),
        resnet_zoo.create(TAG, pretrained=True, num_classes=3),
    ):
        assert model.fc.out_features == 3 and model.pretrained_cfg.labels is None
    assert resnet_zoo.ResNet.from_pretrained(data_path(TAG)).pretrained_cfg.labels[7] == "7"
