"""Feature sets: shards + index, resumable to the same bytes after SIGKILL, torchrun ranks,
bad files at scale."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image

import resnet_zoo
from resnet_zoo import ConfigError, InputError
from resnet_zoo.features import read_feature_set, write_feature_set

SAMPLES = REPO_ROOT / "weights" / "samples" / "cifar10"


def _images(directory: Path, n: int) -> Path:
    """``n`` distinct 32x32 JPEGs: the shipped CIFAR samples, shifted and flipped."""
    directory.mkdir(parents=True, exist_ok=True)
    samples = sorted(SAMPLES.glob("*.jpg"))
    for i in range(n):
        img = Image.open(samples[i % len(samples)]).convert("RGB")
        img = img.rotate(3 * (i // len(samples)))
        if i % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img.save(directory / f"img_{i:04d}.jpg", quality=92)
    return directory


@pytest.fixture(scope="module")
def model():
    return resnet_zoo.create("cifar_resnet20", pretrained=True).eval()


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_shards_index_and_reading_back(tmp_path, model):
    data = _images(tmp_path / "imgs", 23)
    summary = write_feature_set(model, [data], tmp_path / "set", shard_size=10, batch_size=4, progress=False)
    assert summary.shards == 3 and summary.written_shards == 3 and summary.images == 23
    fs = read_feature_set(tmp_path / "set")
    feats, paths = fs.load()
    ref, ref_paths = resnet_zoo.extract_features(model, [data], progress=False)
    assert paths == [str(p) for p in ref_paths] and torch.allclose(feats, ref, atol=1e-5)
    assert [len(p) for _, p in fs.shards()] == [10, 10, 3]
    index = json.loads((tmp_path / "set" / ".index.json").read_text())
    assert index["num_features"] == 64 and index["num_images"] == 23 and index["num_bad"] == 0
    # A shard holds its paths as the single file does: a JSON list in the header's metadata.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "set" / "shard-00000.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["paths"]) == paths[:10] and set(f.keys()) == {"features"}
    # float16 storage
    write_feature_set(model, [data], tmp_path / "half", shard_size=10, store_dtype="float16", progress=False)
    half, _ = read_feature_set(tmp_path / "half").load()
    assert half.dtype == torch.float16 and torch.allclose(half.float(), ref, atol=1e-2, rtol=1e-2)


def test_resume_skips_complete_shards_and_refuses_another_run(tmp_path, model):
    data = _images(tmp_path / "imgs", 25)
    out = tmp_path / "set"
    write_feature_set(model, [data], out, shard_size=10, progress=False)
    before = _files(out)
    again = write_feature_set(model, [data], out, shard_size=10, progress=False)
    assert again.written_shards == 0 and again.skipped_shards == 3
    (out / "shard-00001.safetensors").write_bytes(b"damaged")  # a damaged shard is rewritten
    again = write_feature_set(model, [data], out, shard_size=10, progress=False)
    assert again.written_shards == 1 and _files(out) == before
    _images(tmp_path / "imgs", 26)  # one file added
    with pytest.raises(ConfigError, match="input list"):
        write_feature_set(model, [data], out, shard_size=10, progress=False)
    other = resnet_zoo.create("cifar_resnet32", pretrained=True).eval()
    (data / "img_0025.jpg").unlink()
    with pytest.raises(ConfigError, match="model"):
        write_feature_set(other, [data], out, shard_size=10, progress=False)
    summary = write_feature_set(other, [data], out, shard_size=10, progress=False, overwrite=True)
    assert summary.written_shards == 3 and read_feature_set(out).index["model"] == "cifar_resnet32"


def test_a_resume_with_other_numerics_refuses_and_names_the_difference(tmp_path, model):
    """The fast path then --eager over the same set: the shards would mix compute paths."""
    data = _images(tmp_path / "imgs", 25)
    out = tmp_path / "set"
    fast = resnet_zoo.optimize_for_inference(model)
    write_feature_set(fast, [data], out, shard_size=10, progress=False)
    run = json.loads((out / ".run.json").read_text())
    assert run["backend"] == "torch" and run["compute_dtype"] == "float32" and run["device"] == "cpu"
    assert len(run["weights_sha256"]) == 64 and run["preprocessing"]["input_size"] == 32
    (out / "shard-00001.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"backend \(torch -> eager\)") as e:
        write_feature_set(model, [data], out, shard_size=10, progress=False)
    assert "\n" not in str(e.value)
    # Other weights under the same name and tag are another run too.
    changed = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    with torch.no_grad():
        changed.fc.bias.add_(1.0)
    with pytest.raises(ConfigError, match="weights_sha256"):
        write_feature_set(resnet_zoo.optimize_for_inference(changed), [data], out, shard_size=10, progress=False)
    again = write_feature_set(fast, [data], out, shard_size=10, progress=False)
    assert again.written_shards == 1 and again.skipped_shards == 2


def test_bad_files_listed_with_skip_bad_else_stop_with_the_path(tmp_path, model):
    data = _images(tmp_path / "imgs", 25)
    bad = data / "img_0022.jpg"
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "set"
    with pytest.raises(InputError, match="img_0022.jpg"):
        write_feature_set(model, [data], out, shard_size=10, progress=False)
    assert (out / ".shard-00000.json").is_file() and (out / ".shard-00001.json").is_file()
    bad.write_bytes(good_bytes)  # fixed: the resume writes only the last shard
    assert write_feature_set(model, [data], out, shard_size=10, progress=False).written_shards == 1
    bad.write_bytes(b"not a jpeg")
    skipped = write_feature_set(model, [data], tmp_path / "skip", shard_size=10, skip_bad=True, progress=False)
    fs = read_feature_set(tmp_path / "skip")
    assert skipped.images == 25 and fs.num_images == 24
    assert [b["path"] for b in fs.bad] == [str(bad)] and "cannot read" in fs.bad[0]["error"]


def _features_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "features",
        "cifar_resnet20",
        str(data),
        "--out",
        str(out),
        "--shard-size",
        "40",
        "--batch-size",
        "8",
        "--quiet",
        "--eager",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_bytes(tmp_path):
    data = _images(tmp_path / "imgs", 400)
    ref = tmp_path / "ref"
    done = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *_features_cmd(data, ref)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "killed"
    for kill_after in (2, 6):  # shard records present when killed
        proc = subprocess.Popen(
            [sys.executable, "-m", "resnet_zoo", *_features_cmd(data, out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 300
        while len(list(out.glob(".shard-*.json"))) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / ".index.json").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *_features_cmd(data, out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["skipped_shards"] >= 6 and summary["written_shards"] == 10 - summary["skipped_shards"]
    leftovers = [p.name for p in out.iterdir() if "partial" in p.name]
    for name in leftovers:  # a kill between write and rename leaves a temporary, never a shard
        (out / name).unlink()
    assert _files(out) == _files(ref)


@pytest.mark.slow
def test_two_processes_under_torchrun_write_the_same_features(tmp_path):
    data = _images(tmp_path / "imgs", 100)
    one = tmp_path / "one"
    two = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r1 = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *_features_cmd(data, one)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "resnet_zoo",
            *_features_cmd(data, two),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r2.returncode == 0, r2.stderr
    a, pa = read_feature_set(one).load()
    b, pb = read_feature_set(two).load()
    assert pa == pb and torch.equal(a, b)
    assert json.loads((one / ".index.json").read_text()) == json.loads((two / ".index.json").read_text())


def test_the_data_ecosystem_reads_a_set_in_any_stored_dtype(tmp_path, model):
    pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    data = _images(tmp_path / "imgs", 23)
    write_feature_set(model, [data], tmp_path / "f32", shard_size=10, progress=False)
    ref, ref_paths = read_feature_set(tmp_path / "f32").load()
    for dtype in ("float32", "float16", "bfloat16"):
        out = tmp_path / dtype
        write_feature_set(model, [data], out, shard_size=10, store_dtype=dtype, progress=False)
        fs = read_feature_set(out)
        array = fs.to_numpy()
        assert array.dtype.name == "float32" and array.shape == (23, 64)
        assert abs(array - ref.numpy()).max() <= (0 if dtype == "float32" else 0.05 * abs(ref.numpy()).max())
        batches = list(fs.iter_batches(batch_size=7))
        assert [len(p) for _, p in batches] == [7, 7, 7, 2]
        assert sum((p for _, p in batches), []) == ref_paths
        assert (sum(b.shape[0] for b, _ in batches), batches[0][0].dtype.name) == (23, "float32")
        table = fs.to_arrow()
        assert table.column_names == ["path", "features"] and table.num_rows == 23
        assert table.schema.field("features").type.list_size == 64
        assert table.schema.metadata[b"model"] == b"cifar_resnet20"
        assert table.column("path").to_pylist() == ref_paths
        frame = fs.to_pandas()
        assert list(frame.columns) == ["path", "features"] and len(frame) == 23
        assert (frame["features"].iloc[3] == array[3]).all()
    with pytest.raises(resnet_zoo.ConfigError, match="batch_size"):
        next(read_feature_set(tmp_path / "f32").iter_batches(batch_size=0))


@pytest.mark.slow
def test_parquet_shards_same_index_resume_and_features(tmp_path, model):
    pq = pytest.importorskip("pyarrow.parquet")
    data = _images(tmp_path / "imgs", 23)
    write_feature_set(model, [data], tmp_path / "st", shard_size=10, progress=False)
    ref, ref_paths = read_feature_set(tmp_path / "st").load()
    out = tmp_path / "pq"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_zoo",
            "features",
            "cifar_resnet20",
            str(data),
            "--out",
            str(out),
            "--format",
            "parquet",
            "--shard-size",
            "10",
            "--eager",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("shard-*.parquet")) == [f"shard-0000{i}.parquet" for i in range(3)]
    fs = read_feature_set(out)
    assert fs.index["file_format"] == "parquet" and fs.index["num_features"] == 64
    feats, paths = fs.load()
    assert paths == ref_paths and torch.allclose(feats, ref, atol=1e-5)
    table = pq.read_table(str(out / "shard-00000.parquet"))
    assert table.column_names == ["path", "features"] and table.num_rows == 10
    pa = pytest.importorskip("pyarrow")
    kind = table.schema.field("features").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 64 and kind.value_type == pa.float32()
    assert table.schema.metadata[b"model"] == b"cifar_resnet20"
    before = _files(out)
    (out / "shard-00002.parquet").unlink()
    again = write_feature_set(
        model, [data], out, shard_size=10, file_format="parquet", progress=False, model_name="cifar_resnet20"
    )
    assert again.written_shards == 1 and _files(out) == before
    with pytest.raises(ConfigError, match=r"file_format \(parquet -> safetensors\)"):
        write_feature_set(model, [data], out, shard_size=10, progress=False, model_name="cifar_resnet20")
    with pytest.raises(ConfigError, match="parquet stores float32 or float16"):
        write_feature_set(model, [data], tmp_path / "bf", file_format="parquet", store_dtype="bfloat16")
    half = tmp_path / "half"
    write_feature_set(model, [data], half, shard_size=10, file_format="parquet", store_dtype="float16", progress=False)
    assert pq.read_table(str(half / "shard-00000.parquet")).schema.field("features").type.value_type == pa.float16()
    assert read_feature_set(half).to_numpy().dtype.name == "float32"


def test_inputs_as_lists_and_uris_give_the_directorys_features(tmp_path, model):
    """A .parquet and a .csv column of paths, a .txt list, and file:// URIs (read through
    pyarrow's file systems, as s3:// or gs:// would be) name the same images as the directory."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from resnet_zoo.features.sources import list_images

    data = _images(tmp_path / "imgs", 12)
    files = sorted(str(p) for p in data.iterdir())
    pq.write_table(pa.table({"path": files[:4]}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("label,path\n" + "".join(f"x,{f}\n" for f in files[4:8]))
    (tmp_path / "c.txt").write_text("\n".join(os.path.relpath(f, tmp_path) for f in files[8:]) + "\n\n")
    lists = [tmp_path / "a.parquet", tmp_path / "b.csv", tmp_path / "c.txt"]
    assert list_images(lists) == list_images([data]) == files
    want = write_feature_set(model, [data], tmp_path / "dir", progress=False)
    got = write_feature_set(model, lists, tmp_path / "lists", progress=False)
    assert (
        read_feature_set(tmp_path / "lists").index["inputs_sha256"]
        == read_feature_set(tmp_path / "dir").index["inputs_sha256"]
    )
    assert got.images == want.images == 12
    uris = list_images([f"file://{data}"])
    assert uris == [f"file://{f}" for f in files]
    write_feature_set(model, [f"file://{data}"], tmp_path / "uris", progress=False)
    f_uri, p_uri = read_feature_set(tmp_path / "uris").load()
    f_dir, _ = read_feature_set(tmp_path / "dir").load()
    assert p_uri == uris and torch.equal(f_uri, f_dir)
    with pytest.raises(InputError, match="no 'path' column"):
        (tmp_path / "bad.csv").write_text("file\nx.jpg\n")
        list_images([tmp_path / "bad.csv"])
    with pytest.raises(InputError, match="nope.jpg does not exist"):
        from resnet_zoo.features.sources import open_image

        open_image(f"file://{tmp_path}/nope.jpg")


def test_the_identity_of_a_bfloat16_onednn_fast_path_is_hashed(tmp_path):
    """The bf16 fast path of a bottleneck ResNet holds oneDNN (opaque) weights: the run's
    weights sha256 reads them as dense tensors."""
    from resnet_zoo.cpu import supported_dtypes
    from resnet_zoo.features.write import run_identity

    if torch.bfloat16 not in supported_dtypes():
        pytest.skip("this CPU has no fast bfloat16")
    model = resnet_zoo.create("resnet18", pretrained=False, num_classes=0).eval()
    fast = resnet_zoo.optimize_for_inference(model, dtype="bfloat16")
    identity = run_identity(fast)
    assert identity["compute_dtype"] == "bfloat16" and len(identity["weights_sha256"]) == 64
    assert identity["weights_sha256"] != run_identity(model)["weights_sha256"]


def test_paths_live_in_the_header_only(tmp_path):
    """One storage of paths (the header's metadata): a shard holding them elsewhere (a uint8
    tensor, as a pre-release wrote them) gives no paths, so a set reading it refuses it; a
    header that would overflow is refused by name."""
    from safetensors.torch import save_file

    from resnet_zoo.features.format import MAX_PATHS_BYTES, encode_paths, read_shard

    old = tmp_path / "old.safetensors"
    encoded = json.dumps(["a.jpg", "b.jpg"]).encode()
    save_file(
        {"features": torch.ones(2, 3), "paths": torch.frombuffer(bytearray(encoded), dtype=torch.uint8)}, str(old)
    )
    feats, paths = read_shard(old, "safetensors")
    assert paths is None and feats.shape == (2, 3)
    with pytest.raises(ConfigError, match="smaller --shard-size"):
        encode_paths(["x" * 1000] * (MAX_PATHS_BYTES // 1000 + 1), tmp_path / "big.safetensors")


def test_a_batch_delivered_twice_is_kept_once_even_after_its_shard_is_written(tmp_path, model):
    """What a retried task may do to the collector: the same batch again, before and after its
    shard is complete. The set is the same bytes as a run without repeats."""
    from resnet_zoo.features.write import collect_shards, finish_feature_set, local_batches, plan_feature_set

    data = _images(tmp_path / "imgs", 12)
    write_feature_set(model, [data], tmp_path / "ref", shard_size=4, batch_size=2, progress=False)
    out = tmp_path / "twice"
    with plan_feature_set(
        model,
        [data],
        out,
        shard_size=4,
        store_dtype="float32",
        file_format="safetensors",
        overwrite=False,
        model_name=None,
    ) as plan:
        batches = list(local_batches(plan, model, 2, 0))
        repeated = batches[:1] + batches[:2] + batches[2:] + batches[:1] + batches[-1:]
        images, _ = collect_shards(plan, repeated, 2, skip_bad=False, progress=False)
        finish_feature_set(plan)
    assert images == 12 and _files(out) == _files(tmp_path / "ref")


# A `features` run that holds each shard until GATE exists: a real writer, alive while the test
# starts a second one on the same --out.
_GATED = """
import os, sys, time
import resnet_zoo.features.write as write
from resnet_zoo.cli import main
gate, real = sys.argv[1], write._write_shard
def gated(*a, **k):
    deadline = time.time() + 120
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.02)
    return real(*a, **k)
write._write_shard = gated
sys.exit(main(sys.argv[2:]))
"""


def _features_args(arch: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["features", arch, str(data), "--out", str(out), "--shard-size", "4", "--quiet", *extra]


def _gated_run(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    gate = tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _GATED, str(gate), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, gate


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.communicate()[1][-2000:]


@pytest.mark.slow
def test_a_second_writer_of_another_run_fails_at_once_naming_the_first(tmp_path):
    data = _images(tmp_path / "imgs", 10)
    out = tmp_path / "set"
    first, gate = _gated_run(tmp_path, *_features_args("cifar_resnet56", data, out, "--eager"))
    _wait_for(out / ".run.json", first)
    started = time.time()
    second = subprocess.run(
        [sys.executable, "-m", "resnet_zoo", *_features_args("cifar_resnet20", data, out, "--overwrite")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 1
    assert f"is being written by pid {first.pid} on {os.uname().nodename}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and time.time() - started < 60
    gate.touch()
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    fs = read_feature_set(out)
    assert (
        fs.index["model"] == "cifar_resnet56"
        and json.loads((out / ".run.json").read_text())["model"] == "cifar_resnet56"
    )
    feats, _ = fs.load()
    ref, _ = resnet_zoo.extract_features(
        resnet_zoo.create("cifar_resnet56", pretrained=True).eval(), [data], progress=False
    )
    assert torch.allclose(feats, ref, atol=1e-5)


@pytest.mark.slow
def test_two_runs_of_the_same_command_on_one_directory_both_succeed_with_the_same_bytes(tmp_path):
    data = _images(tmp_path / "imgs", 10)
    out, alone = tmp_path / "set", tmp_path / "alone"
    assert (
        subprocess.run(
            [sys.executable, "-m", "resnet_zoo", *_features_args("cifar_resnet20", data, alone)], timeout=300
        ).returncode
        == 0
    )
    first, gate = _gated_run(tmp_path, *_features_args("cifar_resnet20", data, out))
    _wait_for(out / ".run.json", first)
    second = subprocess.Popen(
        [sys.executable, "-m", "resnet_zoo", *_features_args("cifar_resnet20", data, out), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert second.poll() is None  # it waits for the first writer
    gate.touch()
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr[-2000:]
    assert json.loads(stdout)["written_shards"] == 0  # the second resumed the first's complete set
    assert _files(out) == _files(alone)


def test_only_records_of_this_run_are_resumed_and_indexed(tmp_path, model):
    data = _images(tmp_path / "imgs", 12)
    out, other_out = tmp_path / "set", tmp_path / "other"
    write_feature_set(model, [data], out, shard_size=4, progress=False)
    before = _files(out)
    other = resnet_zoo.create("cifar_resnet32", pretrained=True).eval()
    write_feature_set(other, [data], other_out, shard_size=4, progress=False)
    # Shard 1 and its record from another model's run: sha256 and row count match, the run does not.
    for name in ("shard-00001.safetensors", ".shard-00001.json"):
        shutil.copy(other_out / name, out / name)
    with pytest.raises(resnet_zoo.CheckpointError, match="shard 1 was written by another run"):
        json.loads((out / ".index.json").read_text())  # the index is intact; rebuild one that mixes
        index = json.loads((out / ".index.json").read_text())
        index["shards"][1] = json.loads((out / ".shard-00001.json").read_text())
        (out / ".index.json").write_text(json.dumps(index))
        read_feature_set(out)
    again = write_feature_set(model, [data], out, shard_size=4, progress=False)
    assert again.written_shards == 1 and _files(out) == before


def test_two_input_lists_that_join_to_the_same_text_are_two_runs(tmp_path, model):
    from resnet_zoo.features.write import inputs_sha256

    assert inputs_sha256(["a.jpg\nb.jpg", "c.jpg"]) != inputs_sha256(["a.jpg", "b.jpg\nc.jpg"])
    data = tmp_path / "imgs"
    sample = Image.open(sorted(SAMPLES.glob("*.jpg"))[0])
    data.mkdir()
    for name in ("a.jpg\nb.jpg", "c.jpg"):
        sample.save(data / name)
    out = tmp_path / "set"
    write_feature_set(model, [data], out, shard_size=4, progress=False)
    for p in data.iterdir():
        p.unlink()
    for name in ("a.jpg", "b.jpg\nc.jpg"):
        sample.rotate(90).save(data / name)
    with pytest.raises(ConfigError, match="input list"):
        write_feature_set(model, [data], out, shard_size=4, progress=False)
