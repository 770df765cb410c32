"""Training: outputs, resume determinism, torchrun with 2 processes, every dataset reader."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image
from safetensors.torch import load_file
from test_data import _write_cifar

import resnet_zoo
from resnet_zoo import CheckpointError, InputError
from resnet_zoo.train import TrainConfig, train

pytest.importorskip("sklearn")

SMALL = dict(arch="cifar_resnet20", dataset="digits", batch_size=64, limit_train=256, progress=False)


def _cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    result = _cli(
        "train",
        "cifar_resnet20",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--batch-size",
        "64",
        "--limit-train",
        "256",
    )
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.mark.slow
def test_outputs(trained):
    out, result = trained
    assert "held-out accuracy" in result.stdout
    assert "epoch 1/2" in result.stderr  # the tqdm bar
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s"} <= set(metrics[0])
    assert Image.open(out / "curves.png").size == (900, 480)
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "model-00002.safetensors",
        "optimizer-00002.safetensors",
        "state.json",
    ]
    card = (out / "README.md").read_text()
    assert "resnet_zoo train cifar_resnet20 --dataset digits --epochs 2" in card
    n_val = json.loads((out / "config.json").read_text())["pretrained"]["heldout_images"]
    right = round(metrics[-1]["val_acc"] * n_val)
    assert f"| held-out accuracy | {100 * metrics[-1]['val_acc']:.2f}% ({right}/{n_val}) |" in card
    document = json.loads((out / "config.json").read_text())
    assert document["pretrained"]["labels"] == [str(i) for i in range(10)]
    assert document["pretrained"]["heldout_accuracy"] == metrics[-1]["val_acc"]
    assert document["config"]["img_channels"] == 1
    # #35 part 5: a model-index the Hub reads (dataset, metric, value), and no base_model.
    from huggingface_hub import ModelCard

    data = ModelCard.load(out / "README.md").data
    (result,) = data.eval_results
    assert (result.dataset_type, result.dataset_split, result.metric_type) == ("digits", "held-out", "accuracy")
    assert result.metric_value == round(metrics[-1]["val_acc"], 6) and data.base_model is None


@pytest.mark.slow  # its fixture is a training run
def test_trained_directory_loads_through_create_and_torch_hub(trained):
    out, _ = trained
    model = resnet_zoo.create("cifar_resnet20", pretrained=out).eval()
    assert model.config.img_channels == 1 and model.pretrained_cfg.labels[3] == "3"
    ref = load_file(str(out / "model.safetensors"))
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], ref["layer1.0.conv1.weight"])
    hub = torch.hub.load(str(REPO_ROOT), "cifar_resnet20", source="local", pretrained=str(out)).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(hub(x), model(x))


def test_lr_schedule_is_the_papers():
    from resnet_zoo.train.loop import lr_at as _lr_at

    cfg = TrainConfig(**SMALL, out="x", epochs=4)
    lrs = [_lr_at(s, 64000, cfg) for s in (0, 31999, 32000, 47999, 48000, 63999)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.slow
def test_resume_after_a_kill_ends_with_the_same_weights(tmp_path):
    args = [
        "train",
        "cifar_resnet20",
        "--dataset",
        "digits",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--limit-train",
        "256",
        "--quiet",
    ]
    whole = tmp_path / "whole"
    assert _cli(*args, "--out", str(whole)).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_zoo", *args, "--out", str(cut)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = cut / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not state.exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 4, "the kill must land before the end"
    assert not (cut / "model.safetensors").exists()
    result = _cli(*args, "--out", str(cut), "--resume")
    assert result.returncode == 0, result.stderr
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(cut / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    metrics = json.loads((cut / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4]


# Runs train() and SIGKILLs itself just before the N-th os.replace or unlink inside checkpoint/
# of the second epoch's save: a kill as it happens, at each step of the save.
_KILL_DURING_SAVE = """
import os, pathlib, signal, sys
from resnet_zoo.cli import main
op, n = sys.argv[1], int(sys.argv[2])
seen = {"replace": -3, "unlink": 0}  # the first epoch's save makes three replaces and no unlink
real = {"replace": os.replace, "unlink": pathlib.Path.unlink}
def hook(kind, target):
    if pathlib.Path(target).parent.name == "checkpoint":
        seen[kind] += 1
        if kind == op and seen[kind] == n:
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = lambda a, b: (hook("replace", b), real["replace"](a, b))[1]
pathlib.Path.unlink = lambda self, missing_ok=False: (hook("unlink", self), real["unlink"](self, missing_ok))[1]
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    assert _cli(*_KILL_ARGS, "--out", str(out)).returncode == 0
    return load_file(str(out / "model.safetensors"))


_KILL_ARGS = [
    "train",
    "cifar_resnet20",
    "--dataset",
    "digits",
    "--epochs",
    "3",
    "--batch-size",
    "64",
    "--limit-train",
    "128",
    "--quiet",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "op, n",
    [
        pytest.param("replace", 1, marks=pytest.mark.slow),  # before the new model file is in place
        ("replace", 2),  # model in place, optimizer not (the old three-file save lost the run here)
        pytest.param("replace", 3, marks=pytest.mark.slow),  # both in place, state.json not yet
        ("unlink", 1),  # state.json committed, the previous epoch's files not yet deleted
        pytest.param("unlink", 2, marks=pytest.mark.slow),
    ],
)
def test_a_kill_at_any_point_of_a_checkpoint_save_resumes_to_the_same_weights(tmp_path, uninterrupted, op, n):
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_SAVE, op, str(n), *_KILL_ARGS, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == (1 if op == "replace" else 2)
    resumed = _cli(*_KILL_ARGS, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    final = load_file(str(out / "model.safetensors"))
    assert final.keys() == uninterrupted.keys()
    for k in final:
        assert torch.equal(final[k], uninterrupted[k]), k
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "model-00003.safetensors",
        "optimizer-00003.safetensors",
        "state.json",
    ]  # nothing stale left


@pytest.mark.slow
def test_resume_refuses_a_damaged_or_different_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(**SMALL, out=str(out), epochs=1))
    ckpt = out / "checkpoint" / "model-00001.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        train(TrainConfig(**SMALL, out=str(out), epochs=2, resume=True))
    out2 = tmp_path / "run2"
    train(TrainConfig(**SMALL, out=str(out2), epochs=1))
    with pytest.raises(CheckpointError, match="lr"):
        train(TrainConfig(**SMALL, out=str(out2), epochs=1, lr=0.05, resume=True))


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "resnet_zoo",
            "train",
            "cifar_resnet20",
            "--dataset",
            "digits",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--limit-train",
            "256",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote") == 1  # rank 0 alone reports and saves
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics) == 2
    model = resnet_zoo.create("cifar_resnet20", pretrained=out)
    assert model.num_classes == 10


def test_cifar10_binary_end_to_end(tmp_path):
    _write_cifar(tmp_path / "data", "cifar10", n_train=(8, 8, 8, 8, 8), n_test=8)
    out = tmp_path / "c10"
    final = train(
        TrainConfig(
            arch="cifar_resnet20",
            dataset="cifar10",
            data=str(tmp_path / "data"),
            out=str(out),
            epochs=1,
            batch_size=16,
            progress=False,
        )
    )
    assert 0 <= final["val_acc"] <= 1
    model = resnet_zoo.create("cifar_resnet20", pretrained=out)
    assert model.pretrained_cfg.labels[0] == "class0" and model.config.img_channels == 3


def test_folder_with_train_and_test_splits(tmp_path):
    root = tmp_path / "shapes"
    for split, n in (("train", 6), ("test", 3)):
        for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (36 + i, 40), colour).save(root / split / cls / f"{i}.png")
    out = tmp_path / "split"
    final = train(
        TrainConfig(
            arch="cifar_resnet20",
            dataset="folder",
            data=str(root),
            out=str(out),
            epochs=1,
            batch_size=4,
            invert=0.5,
            progress=False,
        )
    )
    card = json.loads((out / "config.json").read_text())["pretrained"]
    assert card["labels"] == ["blue", "red"]  # not "test" and "train"
    assert card["heldout_images"] == 6 and card["train_images"] == 12 and 0 <= final["val_acc"] <= 1
    (root / "extra").mkdir()
    with pytest.raises(InputError, match="split layout"):
        train(
            TrainConfig(arch="cifar_resnet20", dataset="folder", data=str(root), out=str(out), epochs=1, progress=False)
        )


def test_uint8_augmentation_in_one_gather():
    from resnet_zoo.train.inputs import augment as _augment

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    out = _augment(x, pad=1, flip=False, g=g)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    for i in range(2):  # each image is a 4x4 window of its own zero-padded self
        padded = torch.nn.functional.pad(x[i, 0], (1, 1, 1, 1))
        windows = [padded[dy : dy + 4, dx : dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[i, 0], w) for w in windows)
    flipped = _augment(x, pad=0, flip=False, g=g, invert=1.0)
    assert torch.equal(flipped, 255 - x)


@pytest.mark.slow
def test_folder_training_and_fine_tuning(tmp_path, trained):
    root = tmp_path / "shapes"
    for cls, colour in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (36 + i, 40), colour).save(root / cls / f"{i}.png")
    out = tmp_path / "folder"
    final = train(
        TrainConfig(
            arch="cifar_resnet20",
            dataset="folder",
            data=str(root),
            out=str(out),
            epochs=2,
            batch_size=4,
            val_fraction=0.25,
            progress=False,
        )
    )
    assert final["epoch"] == 2
    assert resnet_zoo.create("cifar_resnet20", pretrained=out).pretrained_cfg.labels == ("blue", "red")
    # Fine-tuning the digits model on 3 classes of digits: the body is loaded, the head is new.
    digits_out, _ = trained
    tuned = tmp_path / "tuned"
    train(TrainConfig(**SMALL, out=str(tuned), epochs=1, pretrained=str(digits_out), lr=0.01))
    assert (tuned / "model.safetensors").is_file()
