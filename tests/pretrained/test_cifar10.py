"""The shipped CIFAR-10 weights (akamaster's ResNet-20/32/44/56 and our own): conversion parity
with the publisher's network, sha256 pins, accuracy on CIFAR-10 (JPEG copy), CIFAR-10 labels."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, perturb_bn, rel_err
from test_convert import _CifarResNet
from torch import nn

import resnet_zoo
from resnet_zoo.factory import convert_checkpoint
from resnet_zoo.manifest import data_path, get_weights, load_manifest

SHARED = REPO_ROOT.parent / "shared" / "data"
CIFAR10_TAGS = [name for name, s in load_manifest().items() if s.labels == "cifar10_classes.txt"]
CLASSES = (REPO_ROOT / "weights" / "cifar10_classes.txt").read_text().split()


def test_every_paper_depth_of_akamaster_ships_and_is_the_default():
    for depth in (20, 32, 44, 56):
        spec = get_weights(f"cifar_resnet{depth}", None)
        assert spec.name == f"cifar_resnet{depth}.cifar10" and spec.path and spec.pinned
        assert spec.license == "bsd-2-clause" and "akamaster" in spec.top1_source
        assert spec.preprocessing.input_size == 32 and spec.preprocessing.crop_pct == 1.0
        assert spec.preprocessing.mean == (0.485, 0.456, 0.406)
        assert spec.evaluations and "CIFAR-10 (JPEG copy) test split" in spec.evaluations[0]["data"]
    assert get_weights("cifar_resnet20", "digits").name == "cifar_resnet20.digits"  # still a tag


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_publishers_checkpoint_layout_converts_with_parity(tmp_path, depth):
    """The publisher's network (option A, written independently in test_convert.py) on random
    weights, saved as their trainer saves it, through the converter the shipping script uses."""
    n = (depth - 2) // 6
    reference = _CifarResNet([n, n, n], [16, 32, 64], "A")
    perturb_bn(reference)
    reference.eval()
    checkpoint = tmp_path / f"resnet{depth}.th"
    torch.save({"state_dict": nn.DataParallel(reference).state_dict(), "best_prec1": 91.0}, checkpoint)
    model = convert_checkpoint(checkpoint, f"cifar_resnet{depth}", tmp_path / "out", source="cifar")
    loaded = resnet_zoo.create(f"cifar_resnet{depth}", pretrained=str(tmp_path / "out")).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = reference(x)
        assert rel_err(model.eval()(x), ref) <= 1e-5
        assert rel_err(loaded(x), ref) <= 1e-5


@pytest.mark.parametrize("tag", CIFAR10_TAGS)
def test_shipped_file_matches_its_pin_and_carries_its_licence(tag):
    from resnet_zoo.pretrained.hub import sha256_file

    spec = get_weights(*tag.split("."))
    directory = data_path(spec.path)
    assert sha256_file(directory / spec.filename) == spec.sha256
    model = resnet_zoo.create(tag, pretrained=True)  # checks the pin itself
    assert list(model.pretrained_cfg.labels) == CLASSES
    card = (directory / "README.md").read_text()
    assert f"license: {spec.license}" in card
    if spec.license == "bsd-2-clause":
        notice = (directory / "LICENSE").read_text()
        assert "Copyright (c) 2018, Yerlan Idelbayev" in notice and notice.strip() in card


@pytest.mark.skipif(
    not (SHARED / "cifar10-jpg.tar.gz").is_file(),
    reason="needs ../shared/data/cifar10-jpg.tar.gz (a developer's clone only)",
)
@pytest.mark.parametrize("tag", CIFAR10_TAGS)
def test_accuracy_on_a_500_image_subset_agrees_with_the_manifest(tag):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from eval_cifar10 import evaluate

    arch, name = tag.split(".")
    spec = get_weights(arch, name)
    subset = evaluate(arch, pretrained=name, limit=500, progress=False)
    assert subset["images"] == 500
    full = spec.evaluations[0]["top1"]  # the whole 10,000-image split, by the same script
    # 500 images: a binomial standard error of ~1.7 points at 85%; 4.5 points is ~2.6 of them.
    assert abs(subset["top1"] - full) <= 4.5, (subset, full)


@pytest.mark.slow
def test_predict_prints_cifar10_class_names(tmp_path):
    from images import sample_photos

    photo = sample_photos()["china.jpg"]
    result = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", "predict", "cifar_resnet56", str(photo), "--top", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert [k["label"] for k in entry["topk"]] == [CLASSES[k["class"]] for k in entry["topk"]]
