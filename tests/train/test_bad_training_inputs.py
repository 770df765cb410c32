"""Bad training inputs: settings, flags, a diverging loss, damaged checkpoints, mismatched
folders. Each a ResNetZooError with one clear line."""

import json
import math

import pytest

from resnet_zoo import CheckpointError, ConfigError, ResNetZooError
from resnet_zoo.train import TrainConfig


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", math.nan),
        ("weight_decay", math.nan),
        ("lr", math.inf),
        ("label_smoothing", 5.0),
        ("input_size", -5),
        ("input_size", 0),
        ("limit_train", 0),
        ("limit_train", -1),
        ("seed", 2**70),
        ("gamma", 0.0),
        ("val_fraction", 1.5),
    ],
)
def test_every_numeric_training_setting_is_checked(field, value, tmp_path):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(arch="cifar_resnet20", dataset="digits", out=str(tmp_path), **{field: value})


def test_cli_training_flags_fail_in_one_line(tmp_path, capsys):
    from resnet_zoo.cli import main

    assert main(["train", "cifar_resnet20", "--dataset", "digits", "--out", str(tmp_path), "--limit-train", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "limit_train" in err[0]


def test_a_diverging_loss_stops_training(tmp_path):
    from resnet_zoo.train import train

    cfg = TrainConfig(
        arch="cifar_resnet20",
        dataset="digits",
        out=str(tmp_path / "run"),
        epochs=1,
        limit_train=64,
        batch_size=32,
        lr=1e30,
        progress=False,
    )
    with pytest.raises(ResNetZooError, match="not finite|diverged"):
        train(cfg)
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from resnet_zoo.train import train

    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(
        TrainConfig(
            arch="cifar_resnet20",
            dataset="digits",
            out=str(out),
            epochs=1,
            limit_train=64,
            batch_size=32,
            progress=False,
        )
    )
    return out


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: {"epoch": 1},
        lambda s: {**s, "sha256": {}},
        lambda s: {**s, "epoch": "one"},
        lambda s: {**s, "param_groups": []},
        lambda s: [1, 2],
    ],
    ids=["epoch-only", "no-digests", "epoch-text", "no-param-groups", "list"],
)
def test_a_damaged_or_foreign_state_json_is_a_checkpoint_error(checkpoint, tmp_path, edit):
    import shutil

    from resnet_zoo.train import train

    out = tmp_path / "run"
    shutil.copytree(checkpoint, out)
    state_path = out / "checkpoint" / "state.json"
    state_path.write_text(json.dumps(edit(json.loads(state_path.read_text()))))
    cfg = TrainConfig(
        arch="cifar_resnet20",
        dataset="digits",
        out=str(out),
        epochs=1,
        limit_train=64,
        batch_size=32,
        progress=False,
        resume=True,
    )  # the same recipe: only state.json differs
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(cfg)


def test_train_and_held_out_folders_with_other_classes_are_refused(tmp_path):
    from PIL import Image

    from resnet_zoo.errors import InputError
    from resnet_zoo.train import train

    for split, classes in (("train", ("cat", "dog")), ("val", ("ant", "cat"))):
        for c in classes:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "data" / split / c / f"{i}.png")
    cfg = TrainConfig(
        arch="cifar_resnet20",
        dataset="folder",
        data=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=2,
        progress=False,
    )
    with pytest.raises(InputError, match="different classes"):
        train(cfg)


@pytest.mark.parametrize("dog_images", [0, 1])
def test_a_class_with_fewer_than_two_images_is_refused(tmp_path, dog_images):
    """#36 case 25: cat/ (6 images) with an empty dog/ trained a "2-class" model on one class
    and reported 100 % held-out accuracy; with 1 image it was a raw "stack expects a non-empty
    TensorList". Now one line naming the class, before anything trains."""
    from PIL import Image

    from resnet_zoo.errors import InputError
    from resnet_zoo.train import train

    for name, n in (("cat", 6), ("dog", dog_images)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "data" / name / f"{i}.png")
    cfg = TrainConfig(
        arch="cifar_resnet20",
        dataset="folder",
        data=str(tmp_path / "data"),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=2,
        progress=False,
    )
    with pytest.raises(InputError, match=rf"at least 2 images to train on; 'dog' \({dog_images}\) has fewer"):
        train(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
