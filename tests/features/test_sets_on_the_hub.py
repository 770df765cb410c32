"""#35 part 5: pretrained features on the Hub. A finished set is pushed as a dataset repo with a
card (from Python and with ``features --push-to-hub``) to the local Hub of tests/hubserver.py,
which takes uploads over huggingface_hub's LFS protocol; ``read_feature_set("hf-hub:...")``
downloads it into the Hub cache, checks every shard against the index, and works offline once
cached. A hostile Hub gets what it gets for weights: nothing served that differs from the index,
nothing written outside the cache."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import HUB_TOKEN as TOKEN
from conftest import REPO_ROOT
from PIL import Image

import resnet_zoo
from resnet_zoo import CheckpointError, ConfigError, DownloadError, IntegrityError
from resnet_zoo.features import read_feature_set, write_feature_set


def _set(root, n, fmt="safetensors", shard_size=4):
    images = root / f"photos{n}"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (36, 36), (i * 20, 100, 200 - i * 10)).save(images / f"{i:02d}.png")
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    out = root / f"feats{n}_{fmt}"
    write_feature_set(model, [images], out, shard_size=shard_size, file_format=fmt, progress=False)
    return out


def test_push_then_read_from_the_hub_and_offline(hub_up, home, monkeypatch):
    local = _set(home.root / "work", 10)
    fs = read_feature_set(local)
    commit = fs.push_to_hub("me/cifar-feats")
    repo = hub_up.repos["datasets/me/cifar-feats"]
    assert commit == repo.commit and sorted(repo.files) == [
        ".index.json", "README.md", "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"
    ]  # fmt: skip
    assert all(a == f"Bearer {TOKEN}" for (m, _), a in zip(hub_up.requests, hub_up.authorizations) if m == "POST")
    card = repo.files["README.md"].decode()
    index = fs.index
    for fact in (
        "cifar_resnet20",
        index["weights_sha256"],
        "| images | 10 ",
        'read_feature_set("hf-hub:me/cifar-feats")',
    ):
        assert fact in card, fact

    got = read_feature_set("hf-hub:me/cifar-feats")
    assert got.directory.is_relative_to(home.cache) and got.directory.name == commit
    feats, paths = got.load()
    ref_feats, ref_paths = fs.load()
    assert paths == ref_paths and torch.equal(feats, ref_feats)
    assert got.index == index
    # Offline, from the cache alone: the server is down.
    hub_up.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = read_feature_set("hf-hub:me/cifar-feats")
    assert torch.equal(again.load()[0], ref_feats)
    with pytest.raises(DownloadError, match="not in the cache"):
        read_feature_set("hf-hub:me/never-pushed")
    home.untouched(home.root / "work")


def test_a_second_push_replaces_the_set_and_the_first_stays_at_its_commit(hub_up, tmp_path):
    first = read_feature_set(_set(tmp_path, 10))
    second = read_feature_set(_set(tmp_path, 6))
    c1 = first.push_to_hub("me/feats")
    c2 = second.push_to_hub("me/feats", commit_message="fewer images")
    files = hub_up.repos["datasets/me/feats"].files
    assert c1 != c2 and sorted(f for f in files if f.startswith("shard-")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]  # fmt: skip  (shard-00002 of the first push is deleted by the second commit)
    assert read_feature_set("hf-hub:me/feats").num_images == 6
    old = read_feature_set(f"hf-hub:me/feats@{c1}")
    assert old.num_images == 10 and torch.equal(old.load()[0], first.load()[0])


def test_a_parquet_set_on_the_hub_has_a_datasets_config(hub_up, tmp_path):
    fs = read_feature_set(_set(tmp_path, 5, fmt="parquet"))
    fs.push_to_hub("me/pq")
    card = hub_up.repos["datasets/me/pq"].files["README.md"].decode()
    assert 'path: "shard-*.parquet"' in card and 'load_dataset("me/pq"' in card
    assert torch.equal(read_feature_set("hf-hub:me/pq").load()[0], fs.load()[0])


def test_a_hostile_hub_is_refused(hub_up, home):
    fs = read_feature_set(_set(home.root / "work", 10))
    fs.push_to_hub("me/feats")
    repo = hub_up.repos["datasets/me/feats"]
    # A shard swapped for another one (its ETag truthful for its new bytes): not the index's sha256.
    repo.files["shard-00001.safetensors"] = repo.files["shard-00000.safetensors"]
    with pytest.raises(IntegrityError, match="shard-00001"):
        read_feature_set("hf-hub:me/feats")
    # An index whose record names a file outside the set.
    index = json.loads(repo.files[".index.json"])
    index["shards"][0]["file"] = "../../../outside.bin"
    hub_up.add_file("datasets/me/evil", ".index.json", json.dumps(index).encode())
    with pytest.raises(CheckpointError, match="not its own shard-00000"):
        read_feature_set("hf-hub:me/evil")
    # A commit that is a path.
    hub_up.add_file("datasets/me/liar", ".index.json", repo.files[".index.json"])
    hub_up.lie("datasets/me/liar", ".index.json", X_Repo_Commit="../../../../outside")
    with pytest.raises(DownloadError, match="not a 40-digit commit hash"):
        read_feature_set("hf-hub:me/liar")
    with pytest.raises(ConfigError, match="owner/repo"):
        read_feature_set("hf-hub:../etc")
    with pytest.raises(TypeError, match="hf-hub"):
        read_feature_set(home.root / "work", token="x")
    home.untouched(home.root / "work")


def test_the_cli_pushes_a_finished_set(hub_up, tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(5):
        Image.new("RGB", (36, 36), (i * 40, 90, 20)).save(images / f"{i}.png")
    out = tmp_path / "feats"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "resnet_zoo", "features", "cifar_resnet20", str(images), "--out", str(out)]
    result = subprocess.run(
        [*command, "--push-to-hub", "me/cli-feats", "--json", "--quiet"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    repo = hub_up.repos["datasets/me/cli-feats"]
    assert summary["hub_commit"] == repo.commit and summary["hub_repo"] == "me/cli-feats"
    digest = hashlib.sha256((out / "shard-00000.safetensors").read_bytes()).hexdigest()
    assert hashlib.sha256(repo.files["shard-00000.safetensors"]).hexdigest() == digest
    bad = subprocess.run(
        [*command, "--push-to-hub", "not a repo"], capture_output=True, text=True, timeout=300, env=env
    )
    assert bad.returncode == 1 and "owner/repo" in bad.stderr and "Traceback" not in bad.stderr
