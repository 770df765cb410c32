"""Bad training inputs: settings, flags, a diverging loss, damaged checkpoints, mismatched
folders. Each a ResNetZooError with one clear line."""

import json
import math

import pytest
import torch

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


def _folder_run(tmp_path) -> TrainConfig:
    """One epoch of cifar_resnet20 on the class folders in tmp_path/data, into tmp_path/run."""
    return TrainConfig(
        arch="cifar_resnet20", dataset="folder", data=str(tmp_path / "data"), out=str(tmp_path / "run"),
        epochs=1, batch_size=2, progress=False,
    )  # fmt: skip


def test_train_and_held_out_folders_with_other_classes_are_refused(tmp_path):
    from PIL import Image

    from resnet_zoo.errors import InputError
    from resnet_zoo.train import train

    for split, classes in (("train", ("cat", "dog")), ("val", ("ant", "cat"))):
        for c in classes:
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(tmp_path / "data" / split / c / f"{i}.png")
    cfg = _folder_run(tmp_path)
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
    cfg = _folder_run(tmp_path)
    with pytest.raises(InputError, match=rf"at least 2 images to train on; 'dog' \({dog_images}\) has fewer"):
        train(cfg)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def _rename_epoch(directory, state):
    """Epoch 999 with no metrics, its files renamed to match (a consistent-looking forgery)."""
    names = {}
    for name, digest in state["sha256"].items():
        new = name.replace("-00001.", "-00999.")
        (directory / name).rename(directory / new)
        names[new] = digest
    return {**state, "epoch": 999, "metrics": [], "sha256": names}


def _other_buffer_shape(directory, state):
    from safetensors.torch import load_file, save_file

    from resnet_zoo.util.integrity import sha256_file

    name = next(n for n in state["sha256"] if n.startswith("optimizer"))
    buffers = load_file(str(directory / name))
    first = next(iter(buffers))
    buffers[first] = torch.zeros(7, 7)
    save_file(buffers, str(directory / name))
    return {**state, "sha256": {**state["sha256"], name: sha256_file(directory / name)}}


def _group_edit(**changes):
    return lambda directory, s: {**s, "param_groups": [{**s["param_groups"][0], **changes}]}


def _swapped_ids(directory, s):
    params = list(s["param_groups"][0]["params"])
    params[0], params[1] = params[1], params[0]
    return {**s, "param_groups": [{**s["param_groups"][0], "params": params}]}


@pytest.mark.slow  # its fixture is a training run
@pytest.mark.parametrize(
    "tamper",
    [_rename_epoch, _other_buffer_shape, _group_edit(momentum="0.9"), lambda d, s: {**s, "metrics": [1]}, _swapped_ids],
    ids=["epoch-999-no-metrics", "buffer-of-another-shape", "momentum-as-text", "metrics-of-numbers", "swapped-ids"],
)
def test_a_tampered_state_is_refused_before_any_data_are_loaded(checkpoint, tmp_path, tamper, monkeypatch):
    """#36 case 26: these exited 0 having trained nothing ("accuracy nan after None epochs") or
    raised a raw error after the data were loaded. Now a CheckpointError, and no data read."""
    import shutil

    import resnet_zoo.train.loop as loop
    from resnet_zoo.train import train

    out = tmp_path / "run"
    shutil.copytree(checkpoint, out)
    directory = out / "checkpoint"
    state_path = directory / "state.json"
    state_path.write_text(json.dumps(tamper(directory, json.loads(state_path.read_text()))))

    def no_data(*args, **kwargs):
        raise AssertionError("data were loaded before the checkpoint was checked")

    monkeypatch.setattr(loop, "load_data", no_data)
    cfg = TrainConfig(
        arch="cifar_resnet20", dataset="digits", out=str(out), epochs=1, limit_train=64, batch_size=32,
        progress=False, resume=True,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(cfg)
