"""Bad weights files, configs, specs and downloads (a slow drip, bad pace settings): each a
ResNetZooError with one clear line, nothing trusted left behind."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import resnet_zoo
from resnet_zoo import CheckpointError, ConfigError, create


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
    d = _edit_config(r20_dir, tmp_path / "deep", lambda doc: doc["config"].update(n_blocks=[1500, 3, 3]))
    with pytest.raises(CheckpointError, match="asks for 1506 blocks but the weights hold 9"):
        resnet_zoo.ResNet.from_pretrained(d)
    # Past what any ResNet has, the config itself is refused, as a fault of the file.
    deeper = _edit_config(r20_dir, tmp_path / "deeper", lambda doc: doc["config"].update(n_blocks=[30000, 3, 3]))
    with pytest.raises(CheckpointError, match=r"config\.json: n_blocks=\[30000, 3, 3\] asks for 30,006 blocks"):
        resnet_zoo.ResNet.from_pretrained(deeper)
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
    sd["layer1.0.bn1.running_var"] = -torch.ones_like(sd["layer1.0.bn1.running_var"])
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


def test_a_newer_format_version_is_refused(r20_dir, tmp_path):
    d = _edit_config(r20_dir, tmp_path / "v9", lambda doc: doc.update(format_version=9))
    with pytest.raises(CheckpointError, match="format_version 9"):
        resnet_zoo.ResNet.from_pretrained(d)


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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_a_zero_dim_head_weight_is_a_checkpoint_error(tmp_path):
    """#36 case 22: a saved model whose fc.weight is 0-dim raised a raw IndexError."""
    model = create("cifar_resnet20")
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(saved / "model.safetensors"))
    sd["fc.weight"] = torch.tensor(1.0)
    save_file(sd, str(saved / "model.safetensors"))
    for load in (lambda: create("cifar_resnet20", pretrained=saved), lambda: resnet_zoo.ResNet.from_pretrained(saved)):
        with pytest.raises(CheckpointError, match=r"fc.weight has shape \[\], not \[classes, features\]"):
            load()
