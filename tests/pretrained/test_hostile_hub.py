"""A Hub that lies and a cache that was tampered with: nothing outside the cache (or a feature
set's --out) is ever created, written or deleted, and every failure is one resnet_zoo line.

Every test keeps victim files beside the cache (``home/.bashrc`` where an ETag of
``../../../../.bashrc`` would land, ``home/notes.txt`` for a ref, ...) and checks after the attack
that the whole tree outside the cache is byte-identical, with nothing new in it. Attacks run
through the library and the CLI, online and offline. (docs/errors.md points here as ``H2``.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, Home
from safetensors.torch import save

import resnet_zoo
from resnet_zoo import CheckpointError, ConfigError, DownloadError, IntegrityError, ResNetZooError, create
from resnet_zoo.cli import main

EVIL = "evil/weights"
SPEC = f"hf-hub:{EVIL}"
FILE = "model.safetensors"
TRAVERSAL = "../../../../.bashrc"  # from <cache>/models--evil--weights/blobs/ to home/.bashrc


@pytest.fixture(scope="module")
def r20():
    torch.manual_seed(5)
    model = resnet_zoo.create("cifar_resnet20").eval()
    return model, save(model.state_dict())


@pytest.fixture
def evil(hub, r20):
    """cifar_resnet20 weights published honestly as evil/weights (the tests make it lie)."""
    hub.add_file(EVIL, FILE, r20[1])
    return hub


def _same(model, reference) -> bool:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(model.eval()(x), reference(x), atol=1e-5)


def _cli(args, capsys) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("resnet-zoo: error: "), err


def _cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.glob("models--*/snapshots/*/*") if p.resolve().is_file()]


def _snapshot(cache: Path) -> Path:
    (snap,) = cache.glob("models--evil--weights/snapshots/*/model.safetensors")
    return snap


# --- 1. An ETag with a path in it ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("header", ["ETag", "X-Linked-Etag"])
@pytest.mark.parametrize("entry", ["lib", "cli"])
def test_an_etag_naming_a_user_file_never_touches_it(home, evil, r20, header, entry, capsys, monkeypatch):
    lie = {"ETag": f'"{TRAVERSAL}"', "X_Linked_Etag": None} if header == "ETag" else {"X_Linked_Etag": f'"{TRAVERSAL}"'}
    evil.lie(EVIL, FILE, **lie)
    if entry == "lib":
        with pytest.raises(IntegrityError, match="cannot be verified; nothing was downloaded"):
            create("cifar_resnet20", pretrained=SPEC)
    else:
        code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", SPEC], capsys)
        assert code == 1
        _one_line_error(err)
    home.untouched()
    assert evil.gets(FILE) == 0  # refused on the HEAD's answer, before any body
    # Trusting this server explicitly: its bytes are kept under their own sha256, inside the cache.
    monkeypatch.setenv("RESNET_ZOO_ALLOW_UNVERIFIED", "1")
    assert _same(create("cifar_resnet20", pretrained=SPEC), r20[0])
    home.untouched()
    assert _snapshot(home.cache).resolve().name == hashlib.sha256(r20[1]).hexdigest()


# --- 2 and 3. A commit or a revision with a path in it ---------------------------------------


@pytest.mark.parametrize("where", ["weights", "404 of config.json"])
@pytest.mark.parametrize("entry", ["lib", "cli"])
def test_a_commit_naming_a_path_is_refused_before_anything_is_written(home, evil, where, entry, capsys):
    bad = "../../../../../pwned"
    if where == "weights":
        evil.lie(EVIL, FILE, X_Repo_Commit=bad)
    else:
        evil.lie_404(EVIL, bad)
    if entry == "lib":
        with pytest.raises(DownloadError, match="X-Repo-Commit"):
            create("cifar_resnet20", pretrained=SPEC)
    else:
        code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", SPEC], capsys)
        assert code == 1 and "X-Repo-Commit" in err
        _one_line_error(err)
    home.untouched()
    assert not list(home.root.parent.glob("pwned*")) and not list(home.root.glob("pwned*"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "revision", ["../../../../notes.txt", "main/../../x", "/etc/passwd", "a\\b", "refs//x", "x/", ".", "a b"]
)
def test_a_revision_naming_a_path_is_refused_everywhere(home, evil, revision, capsys):
    with pytest.raises(ConfigError, match="not a branch, tag or commit"):
        create("cifar_resnet20", pretrained=f"{SPEC}@{revision}")
    with pytest.raises(ConfigError, match="not a branch, tag or commit"):
        create("cifar_resnet20", pretrained=SPEC, revision=revision)
    with pytest.raises(ConfigError, match="not a branch, tag or commit"):
        resnet_zoo.ResNet.from_pretrained(EVIL, revision=revision)
    with pytest.raises(ConfigError, match="not a branch, tag or commit"):
        resnet_zoo.pretrained.hub.download(EVIL, FILE, revision=revision)
    code, _, err = _cli(
        ["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", f"{SPEC}@{revision}"], capsys
    )
    assert code == 1
    _one_line_error(err)
    assert evil.requests == []  # refused before the Hub was asked
    home.untouched()


def test_a_good_revision_records_its_ref_inside_the_cache(home, evil, r20, monkeypatch):
    commit = evil.repos[EVIL].commit
    assert _same(create("cifar_resnet20", pretrained=f"{SPEC}@main"), r20[0])
    assert (home.cache / "models--evil--weights" / "refs" / "main").read_text() == commit
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _same(create("cifar_resnet20", pretrained=f"{SPEC}@{commit}"), r20[0])
    home.untouched()


def test_a_redirect_to_a_path_is_only_a_url(home, evil):
    evil.lie(EVIL, FILE, Location=TRAVERSAL)
    with pytest.raises(ResNetZooError):
        create("cifar_resnet20", pretrained=SPEC)
    home.untouched()
    assert _cached_files(home.cache) == []


# --- 4 and 5. A tampered cache ---------------------------------------------------------------


def _plant(home: Home, kind: str) -> None:
    snap = _snapshot(home.cache)
    blob = snap.resolve()
    if kind == "snapshot entry":
        snap.unlink()
        snap.symlink_to(home.home / ".bashrc")
    elif kind == "blob":
        blob.unlink()
        blob.symlink_to(home.home / ".bashrc")
    elif kind == "snapshot folder":
        folder = snap.parent
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        folder.symlink_to(home.home)  # home/model.safetensors is the user's own file
    elif kind == "lock file":  # a lock is opened for writing: it must never truncate a target
        lock = home.cache / ".locks" / "models--evil--weights" / f"{blob.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.unlink(missing_ok=True)
        lock.symlink_to(home.home / ".bashrc")
        snap.unlink()  # so that the next online load takes the lock
    elif kind == "blobs folder":
        blobs = blob.parent
        for p in blobs.iterdir():
            p.unlink()
        blobs.rmdir()
        blobs.symlink_to(home.home)


@pytest.mark.parametrize("kind", ["snapshot entry", "blob", "snapshot folder", "blobs folder", "lock file"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_a_planted_link_loses_only_itself(home, evil, r20, kind, mode, monkeypatch, capsys):
    assert _same(create("cifar_resnet20", pretrained=SPEC), r20[0])
    home.before = home.tree()
    _plant(home, kind)
    if kind == "lock file":
        if mode == "offline":
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            with pytest.raises(DownloadError, match="not in the cache"):
                create("cifar_resnet20", pretrained=SPEC)
        else:
            assert _same(create("cifar_resnet20", pretrained=SPEC), r20[0])
    elif mode == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", SPEC], capsys)
        assert code == 1 and "tampered" in err
        _one_line_error(err)
        if kind in ("snapshot entry", "blob"):  # the link went: now the cache simply lacks the file
            assert not os.path.lexists(
                home.cache / "models--evil--weights" / "snapshots" / evil.repos[EVIL].commit / FILE
            )
            with pytest.raises(DownloadError, match="not in the cache"):
                create("cifar_resnet20", pretrained=SPEC)
        else:  # a planted folder link is refused every time, never followed
            with pytest.raises(IntegrityError, match="tampered"):
                create("cifar_resnet20", pretrained=SPEC)
    elif kind in ("snapshot entry", "blob"):
        # Online the Hub's ETag is the truth: the link is replaced, the blob fetched again.
        assert _same(create("cifar_resnet20", pretrained=SPEC), r20[0])
        assert _snapshot(home.cache).resolve().parent == (home.cache / "models--evil--weights" / "blobs")
    else:
        with pytest.raises(IntegrityError, match="tampered"):
            create("cifar_resnet20", pretrained=SPEC)
    home.untouched()


def _pinned_manifest(tmp_path: Path, sha: str) -> Path:
    data = json.loads((REPO_ROOT / "weights" / "manifest.json").read_text())
    data["weights"]["cifar_resnet20.evil"] = {
        "hf_hub_id": EVIL,
        "filename": FILE,
        "source": "resnet_zoo",
        "sha256": sha,
        "num_classes": 10,
        "preprocessing": {"input_size": 32, "crop_pct": 1.0, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("mode", ["online", "offline unpinned", "offline pinned"])
def test_a_substituted_blob(home, evil, r20, mode, monkeypatch, caplog):
    torch.manual_seed(9)
    other = resnet_zoo.create("cifar_resnet20").eval()
    other_bytes = save(other.state_dict())
    if mode == "offline pinned":
        manifest = _pinned_manifest(home.root, hashlib.sha256(r20[1]).hexdigest())
        monkeypatch.setenv("RESNET_ZOO_MANIFEST", str(manifest))
        load = lambda: create("cifar_resnet20.evil", pretrained=True)  # noqa: E731
    else:
        load = lambda: create("cifar_resnet20", pretrained=SPEC)  # noqa: E731
    assert _same(load(), r20[0])
    home.before = home.tree()
    snap = _snapshot(home.cache)
    fake = snap.resolve().parent / hashlib.sha256(other_bytes).hexdigest()
    fake.write_bytes(other_bytes)
    snap.unlink()
    snap.symlink_to(os.path.relpath(fake, snap.parent))
    if mode == "online":
        assert _same(load(), r20[0])  # checked against the Hub's ETag, not the name in the cache
        assert "tampered" in caplog.text
        assert snap.resolve().name == hashlib.sha256(r20[1]).hexdigest()
    elif mode == "offline unpinned":
        # Offline and unpinned, the cache is the only witness (documented): a blob named after
        # its own sha256 inside blobs/ is as trustworthy as the cache itself.
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert _same(load(), other)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(IntegrityError, match="pinned"):
            load()
        assert fake.read_bytes() == other_bytes  # a blob that matches its own name is kept
        assert not os.path.lexists(snap)  # only the wrong link went
    home.untouched()


# --- 6 and 9. Bodies and sizes that lie ------------------------------------------------------


@pytest.mark.parametrize("fault", ["oversize", "inflate"])
def test_a_body_beyond_its_declared_size_is_cut_off_and_not_kept(home, evil, r20, fault):
    evil.set_fault(EVIL, FILE, fault)
    with pytest.raises(DownloadError, match="more than the .* bytes it declared"):
        create("cifar_resnet20", pretrained=SPEC)
    stored = sum(p.stat().st_size for p in home.cache.rglob("*") if p.is_file() and not p.is_symlink())
    assert stored < len(r20[1])  # nothing past the bound, and not the partial either
    assert _cached_files(home.cache) == []
    home.untouched()
    evil.set_fault(EVIL, FILE, None)
    assert _same(create("cifar_resnet20", pretrained=SPEC), r20[0])


@pytest.mark.parametrize(
    "lie, match",
    [
        ({"X_Linked_Size": str(10**15)}, "declares 1,000,000,000,000,000 bytes"),
        ({"X_Linked_Size": "-5"}, "declares -5 bytes"),
        ({"fault": "short_clean"}, "the body ended after"),
    ],
)
@pytest.mark.parametrize("entry", ["lib", "cli"])
def test_absurd_sizes_and_short_bodies_are_one_line(home, evil, lie, match, entry, capsys):
    lie = dict(lie)
    if "fault" in lie:
        evil.set_fault(EVIL, FILE, lie.pop("fault"))
    else:
        evil.lie(EVIL, FILE, **lie)
    if entry == "lib":
        with pytest.raises(DownloadError, match=match):
            create("cifar_resnet20", pretrained=SPEC)
    else:
        code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", SPEC], capsys)
        assert code == 1 and match.split(" ")[0] in err
        _one_line_error(err)
    assert _cached_files(home.cache) == []
    home.untouched()


# --- 7 and 8. A config.json that builds bombs, labels that drive the terminal ----------------


@pytest.fixture(scope="module")
def r20_saved(tmp_path_factory, r20):
    d = tmp_path_factory.mktemp("saved")
    r20[0].save_pretrained(d)
    return d


def _publish(where: str, doc: dict, saved: Path, hub, tmp_path: Path) -> str:
    """The weights in ``saved`` with the config.json ``doc``, on the local Hub or in a directory;
    returns the pretrained spec that names them."""
    if where == "hub":
        hub.add_file(EVIL, FILE, (saved / FILE).read_bytes())
        hub.add_file(EVIL, "config.json", json.dumps(doc).encode())
        return SPEC
    d = tmp_path / "published"
    d.mkdir()
    (d / FILE).write_bytes((saved / FILE).read_bytes())
    (d / "config.json").write_text(json.dumps(doc))
    return str(d)


@pytest.mark.slow
@pytest.mark.parametrize(
    "field, value",
    [
        ("input_size", 40000),
        ("input_size", 0),
        ("crop_pct", 1e-6),
        ("crop_pct", 3.0),
        ("mean", [1e9, 0, 0]),
        ("std", [0, 1, 1]),
        ("std", [1e-9] * 3),
        ("mean", list(range(1000))),
    ],
)
@pytest.mark.parametrize("where", ["hub", "directory"])
def test_bomb_preprocessing_is_a_bad_config_before_any_image(
    home, hub, r20_saved, field, value, where, tmp_path, capsys
):
    doc = json.loads((r20_saved / "config.json").read_text())
    doc["pretrained"] = {
        "preprocessing": {"input_size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.25] * 3, field: value}
    }
    spec = _publish(where, doc, r20_saved, hub, tmp_path)
    with pytest.raises(CheckpointError, match=f"preprocessing.{field}"):
        create("cifar_resnet20", pretrained=spec)
    code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", spec], capsys)
    assert code == 1 and f"preprocessing.{field}" in err
    _one_line_error(err)


def test_too_many_labels_are_a_bad_config(r20_saved, tmp_path):
    doc = json.loads((r20_saved / "config.json").read_text())
    doc["pretrained"] = {"labels": ["x"] * 200_000}
    with pytest.raises(CheckpointError, match="labels"):
        create("cifar_resnet20", pretrained=_publish("directory", doc, r20_saved, None, tmp_path))


@pytest.mark.parametrize("where", ["hub", "directory"])
def test_labels_reach_the_terminal_escaped(home, hub, r20_saved, where, tmp_path, capsys):
    hostile = [
        "\x1b[2J\x1b[31mpwned",
        "cat\nresnet-zoo: error: fake",
        "\u202eevil",
        "bell\x07",
        "\x9b31m",
        "tab\there",
        "ok",
        "ok2",
        "ok3",
        "ok4",
    ]
    doc = json.loads((r20_saved / "config.json").read_text())
    doc["pretrained"] = {
        "labels": hostile,
        "preprocessing": {"input_size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.25] * 3},
    }
    spec = _publish(where, doc, r20_saved, hub, tmp_path)
    code, out, err = _cli(
        ["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", spec, "--top", "10"], capsys
    )
    assert code == 0, err
    assert not any(c in out for c in "\x1b\x07\x9b\u202e\t"), out
    assert len(out.splitlines()) == 11  # the path, then exactly one line per class
    assert "\\x1b[2J" in out and "cat\\nresnet-zoo" in out
    # --json stays exact: JSON escapes control characters itself.
    code, out, _ = _cli(
        ["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", spec, "--top", "10", "--json"], capsys
    )
    assert {t["label"] for t in json.loads(out)[0]["topk"]} == set(hostile)


def test_error_messages_quoting_a_server_are_one_safe_line(home, evil, capsys):
    evil.lie(EVIL, FILE, X_Repo_Commit="\x1b]0;pwned\x07\nline two")
    code, _, err = _cli(["predict", "cifar_resnet20", str(home.home / "cat.png"), "--pretrained", SPEC], capsys)
    assert code == 1 and "\x1b" not in err and "\x07" not in err
    _one_line_error(err)


# --- 11. weights pin against a hostile endpoint ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "lie",
    [
        {"X_Repo_Commit": "../../../x"},
        {"ETag": '"../.."', "X_Linked_Etag": None},
        {"X_Linked_Size": str(10**15)},
        {"X_Repo_Commit": None},
    ],
)
def test_weights_pin_validates_before_it_writes(home, hub, r20, lie, capsys, monkeypatch):
    manifest = _pinned_manifest(home.root, "")
    monkeypatch.setenv("RESNET_ZOO_MANIFEST", str(manifest))
    before = manifest.read_bytes()
    hub.add_file(EVIL, FILE, r20[1])
    hub.lie(EVIL, FILE, **lie)
    code, _, err = _cli(["weights", "pin", "cifar_resnet20.evil"], capsys)
    assert code == 1
    _one_line_error(err)
    assert manifest.read_bytes() == before
    assert main(["weights", "list"]) == 0  # the manifest still loads
    hub.lie(EVIL, FILE)  # honest again: the pin is written, and checked
    capsys.readouterr()
    code, out, err = _cli(["weights", "pin", "cifar_resnet20.evil"], capsys)
    assert code == 0, err
    entry = json.loads(manifest.read_text())["weights"]["cifar_resnet20.evil"]
    assert entry["sha256"] == hashlib.sha256(r20[1]).hexdigest() and entry["size"] == len(r20[1])
    assert entry["revision"] == hub.repos[EVIL].commit
