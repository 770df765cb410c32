"""Hostile input: small files, configs and flags that once crashed with foreign errors,
exhausted memory or answered NaN. Each must be a ResNetZooError with one clear line."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import resnet_zoo
from resnet_zoo import CheckpointError, ConfigError, ResNetZooError, create
from resnet_zoo.train import TrainConfig


@pytest.fixture(scope="module")
def r20_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("r20")
    create("cifar_resnet20", pretrained=True).save_pretrained(d)
    return d


def _edit_config(src: Path, dst: Path, edit) -> Path:
    dst.mkdir()
    (dst / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    doc = json.loads((src / "config.json").read_text())
    edit(doc)
    (dst / "config.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return dst


def test_a_huge_block_index_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.safetensors"
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.999999999.conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="block indices must be 0..n-1"):
        create("resnet18", pretrained=path)
    with pytest.raises(CheckpointError, match="block indices"):
        resnet_zoo.convert_state_dict(
            {"conv1.weight": torch.zeros(1), "layer1.5.conv1.weight": torch.zeros(1)}, source="torchvision"
        )


def test_a_config_asking_for_more_blocks_than_the_weights_hold_is_refused_before_building(r20_dir, tmp_path):
    d = _edit_config(r20_dir, tmp_path / "deep", lambda doc: doc["config"].update(n_blocks=[30000, 3, 3]))
    with pytest.raises(CheckpointError, match="asks for 30006 blocks but the weights hold 9"):
        resnet_zoo.ResNet.from_pretrained(d)
    with pytest.raises(ConfigError, match="img_channels=100000000"):
        create("cifar_resnet20", pretrained=True, img_channels=100_000_000)


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc.update(pretrained={"labels": 5}),
        lambda doc: doc.update(pretrained=[1, 2]),
        lambda doc: doc["pretrained"]["preprocessing"].update(mean=["a", "b", "c"]),
        lambda doc: doc["pretrained"]["preprocessing"].update(std=[float("nan")] * 3),
        lambda doc: doc["pretrained"]["preprocessing"].update(std=[0.0, 1.0, 1.0]),
    ],
    ids=["labels-int", "pretrained-list", "mean-text", "std-nan", "std-zero"],
)
def test_malformed_side_fields_of_config_json_are_checkpoint_errors(r20_dir, tmp_path, edit):
    d = _edit_config(r20_dir, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError):
        resnet_zoo.ResNet.from_pretrained(d)
    with pytest.raises(CheckpointError):
        create("cifar_resnet20", pretrained=d)


def test_deeply_nested_config_json_is_a_checkpoint_error(r20_dir, tmp_path):
    d = _edit_config(r20_dir, tmp_path / "deep", lambda doc: None)
    (d / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError):
        resnet_zoo.ResNet.from_pretrained(d)


def test_negative_running_variance_is_refused(tmp_path):
    model = create("cifar_resnet20")
    sd = model.state_dict()
    sd["blocks.0.bn1.running_var"] = -torch.ones_like(sd["blocks.0.bn1.running_var"])
    save_file(sd, tmp_path / "neg.safetensors")
    with pytest.raises(CheckpointError, match="negative variances"):
        create("cifar_resnet20", pretrained=tmp_path / "neg.safetensors")


@pytest.mark.parametrize(
    "spec",
    [
        "hf-hub:../etc",
        "hf-hub:a b/c",
        "hf-hub:\u00e9t\u00e9/x",
        "hf-hub:" + "a" * 300 + "/b",
        "hf-hub:a/b@bad rev",
        "hf-hub:a--b/c",
    ],
)
def test_malformed_hub_ids_are_config_errors(spec):
    with pytest.raises(ConfigError, match="hf-hub:owner/repo|revision"):
        create("resnet18", pretrained=spec)


def test_an_empty_pretrained_spec_is_refused():
    with pytest.raises(ConfigError, match="names nothing"):
        create("cifar_resnet20", pretrained="")


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


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.mkdir(),
        lambda p: p.write_bytes(b"\xff\xfe{\x00"),
        lambda p: p.write_text(
            json.dumps(
                {
                    "weights": {
                        "cifar_resnet20.x": {
                            "filename": "model.safetensors",
                            "source": "resnet_zoo",
                            "hf_hub_id": "a/b",
                            "preprocessing": {"input_size": "big"},
                        }
                    }
                }
            )
        ),
        lambda p: p.write_text(
            json.dumps(
                {
                    "weights": {
                        "cifar_resnet20.x": {
                            "filename": "model.safetensors",
                            "source": "resnet_zoo",
                            "hf_hub_id": "a/b",
                            "preprocessing": [1, 2],
                        }
                    }
                }
            )
        ),
    ],
    ids=["directory", "not-utf8", "input-size-text", "preprocessing-list"],
)
def test_a_broken_manifest_is_a_config_error(tmp_path, monkeypatch, write):
    from resnet_zoo import manifest

    path = tmp_path / "manifest.json"
    write(path)
    monkeypatch.setenv("RESNET_ZOO_MANIFEST", str(path))
    manifest._load.cache_clear()
    try:
        with pytest.raises(ConfigError, match="manifest|preprocessing"):
            manifest.load_manifest()
    finally:
        manifest._load.cache_clear()


def test_a_missing_labels_file_is_a_config_error():
    from resnet_zoo.manifest import read_labels

    with pytest.raises(ConfigError, match="class names file"):
        read_labels("no_such_labels.txt")


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


def test_usage_errors_are_one_line_and_exit_1(capsys):
    from resnet_zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["predict"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("resnet-zoo predict: error:")
    assert main(["export", "cifar_resnet20", "--format", "onnx", "--out", "x.onnx", "--input-size", "0"]) == 1
    assert "--input-size" in capsys.readouterr().err


def test_a_newer_format_version_is_refused(r20_dir, tmp_path):
    d = _edit_config(r20_dir, tmp_path / "v9", lambda doc: doc.update(format_version=9))
    with pytest.raises(CheckpointError, match="format_version 9"):
        resnet_zoo.ResNet.from_pretrained(d)


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


def test_output_paths_are_checked_before_any_work(tmp_path, capsys):
    from resnet_zoo.cli import main

    assert main(["export", "cifar_resnet20", "--format", "torchscript", "--out", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert main(["bench", "cifar_resnet20", "--plot", str(tmp_path), "--quiet"]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == []


# --- 8. A slow-drip download -----------------------------------------------------------------

DRIP_REPO = "drip/cifar_resnet20"


@pytest.fixture
def drip(hub):
    """cifar_resnet20's weights on the local Hub, served one byte every 0.2 s."""
    from safetensors.torch import save

    torch.manual_seed(0)
    model = create("cifar_resnet20").eval()
    hub.add_file(DRIP_REPO, "model.safetensors", save(model.state_dict()), fault="drip")
    return hub, model


def _trusted_files(cache: Path) -> list[Path]:
    return [p for p in cache.glob("models--*/snapshots/*/*") if p.resolve().is_file()]


@pytest.mark.parametrize(
    "limits, match",
    [
        (
            {"RESNET_ZOO_DOWNLOAD_MIN_SPEED": "1000", "RESNET_ZOO_DOWNLOAD_SPEED_WINDOW": "1"},
            r"bytes/s over the last 1 s, below the minimum of 1,000",
        ),
        (
            {"RESNET_ZOO_DOWNLOAD_MIN_SPEED": "0", "RESNET_ZOO_DOWNLOAD_DEADLINE": "1.5"},
            r"over the 1.5 s deadline set by RESNET_ZOO_DOWNLOAD_DEADLINE",
        ),
    ],
    ids=["minimum-speed", "deadline"],
)
def test_a_slow_drip_download_stops_and_leaves_nothing_trusted(drip, monkeypatch, limits, match):
    import os
    import time

    from resnet_zoo import DownloadError

    hub, model = drip
    for name, value in limits.items():
        monkeypatch.setenv(name, value)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=match):
        create("cifar_resnet20", pretrained=f"hf-hub:{DRIP_REPO}")
    assert time.monotonic() - start < 10
    cache = Path(os.environ["HF_HUB_CACHE"])
    assert _trusted_files(cache) == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="not in the cache"):
        create("cifar_resnet20", pretrained=f"hf-hub:{DRIP_REPO}")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub.set_fault(DRIP_REPO, "model.safetensors", None)  # the link recovers: the next load works
    loaded = create("cifar_resnet20", pretrained=f"hf-hub:{DRIP_REPO}").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_the_pace_only_applies_inside_resnet_zoo_downloads(drip, monkeypatch):
    from huggingface_hub import get_session

    from resnet_zoo import DownloadError

    hub, _ = drip
    monkeypatch.setenv("RESNET_ZOO_DOWNLOAD_MIN_SPEED", "1000")
    monkeypatch.setenv("RESNET_ZOO_DOWNLOAD_SPEED_WINDOW", "0.1")
    with pytest.raises(DownloadError):
        create("cifar_resnet20", pretrained=f"hf-hub:{DRIP_REPO}")  # the hooks are installed now
    url = f"{hub.url}/{DRIP_REPO}/resolve/main/model.safetensors"
    with get_session().stream("GET", url) as response:  # the user's own use of the client
        got = b""
        for chunk in response.iter_raw():
            got += chunk
            if len(got) >= 3:
                break
    assert len(got) >= 3


@pytest.mark.parametrize(
    "name, value",
    [
        ("RESNET_ZOO_DOWNLOAD_MIN_SPEED", "fast"),
        ("RESNET_ZOO_DOWNLOAD_MIN_SPEED", "-1"),
        ("RESNET_ZOO_DOWNLOAD_DEADLINE", "nan"),
        ("RESNET_ZOO_DOWNLOAD_SPEED_WINDOW", "0"),
    ],
)
def test_bad_pace_settings_are_config_errors(hub, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}={value!r} is not valid"):
        create("cifar_resnet20", pretrained=f"hf-hub:{DRIP_REPO}")


def test_bench_settings_are_checked_before_anything_is_printed_or_timed(capsys):
    from resnet_zoo.cli import main
    from resnet_zoo.inference.bench import iter_bench

    for flag in ("--iters", "--repeats", "--batch-size"):
        assert main(["bench", "cifar_resnet20", flag, "0", "--quiet"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"{flag.lstrip('-').replace('-', '_')} must be a positive integer, got 0" in err
    with pytest.raises(ConfigError, match="peers must be"):
        iter_bench(["cifar_resnet20"], peers=("tensorrt",))  # at the call, not at the first row


def test_devices_fifos_and_huge_configs_are_named_for_what_they_are(tmp_path, r20_dir):
    import os

    from resnet_zoo import InputError
    from resnet_zoo.inference.images import load_image
    from resnet_zoo.pretrained import read_checkpoint

    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for path, kind in (("/dev/zero", "is a character device"), (str(fifo), r"is a FIFO \(named pipe\)")):
        with pytest.raises(CheckpointError, match=kind):
            create("cifar_resnet20", pretrained=path)
        with pytest.raises(CheckpointError, match=kind):
            read_checkpoint(path)
        with pytest.raises(InputError, match=kind):
            load_image(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        create("cifar_resnet20", pretrained=str(tmp_path / "missing.safetensors"))
    big = _edit_config(r20_dir, tmp_path / "big", lambda doc: doc.update(padding="x" * (2 << 20)))
    with pytest.raises(CheckpointError, match="a config.json is a few kB"):
        create("cifar_resnet20", pretrained=str(big))


def test_the_speed_is_measured_from_the_first_body_not_from_a_lock_wait(monkeypatch):
    import time

    from resnet_zoo import DownloadError
    from resnet_zoo.pretrained.hub import DownloadPace

    pace = DownloadPace(min_speed=1000, window=0.2, label="w")
    time.sleep(0.3)  # waiting for another process's file lock: no bytes, no fault
    pace.body_started()
    pace.check(500)
    time.sleep(0.25)
    pace.check(500)  # 1000 bytes in 0.25 s: 4,000 bytes/s
    pace.body_started()  # a resumed retry does not restart the window
    time.sleep(0.25)
    with pytest.raises(DownloadError, match="below the minimum of 1,000 bytes/s"):
        pace.check(1)
