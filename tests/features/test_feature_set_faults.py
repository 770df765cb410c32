"""A tampered feature set: an index that lies, a record naming another shard. A one-line
CheckpointError, or the shard written again; nothing outside the set touched."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import resnet_zoo
from resnet_zoo import CheckpointError
from resnet_zoo.features import read_feature_set, write_feature_set


@pytest.fixture
def feature_set(home, tmp_path):
    images = tmp_path / "home" / "photos"
    images.mkdir()
    for i in range(10):
        Image.new("RGB", (36, 36), (i * 20, 100, 200 - i * 10)).save(images / f"{i}.png")
    out = home.home / "feats"
    model = resnet_zoo.create("cifar_resnet20").eval()
    write_feature_set(model, [images], out, shard_size=4, progress=False)
    home.before = home.tree(out)
    return model, images, out


def _edit_index(out: Path, edit) -> None:
    index = json.loads((out / ".index.json").read_text())
    edit(index)
    (out / ".index.json").write_text(json.dumps(index))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda ix: ix["shards"][0].update(rows="7"), "rows"),
        (lambda ix: ix["shards"][1].update(file="shard-00000.safetensors"), "not its own shard-00001"),
        (lambda ix: ix["shards"][0].update(file="../../outside.bin"), "not its own shard-00000"),
        (lambda ix: ix["shards"][0].update(file=None), "not its own"),
        (lambda ix: ix["shards"][0].update(sha256=5), "sha256"),
        (lambda ix: ix["shards"][0].update(bad="x"), "unreadable"),
        (lambda ix: ix.update(shards={"a": 1}), "list"),
        (lambda ix: ix.update(num_features="512"), "num_features"),
        (lambda ix: ix["shards"].__setitem__(0, []), "not an object"),
        (lambda ix: ix["shards"][0].update(rows=3), "rows"),
    ],
)
def test_a_tampered_index_is_one_checkpoint_error(feature_set, home, edit, match):
    _, _, out = feature_set
    _edit_index(out, edit)
    with pytest.raises(CheckpointError, match=match):
        read_feature_set(out).load()
    home.untouched(out)


def test_a_shard_record_naming_another_file_is_rewritten_not_followed(feature_set, home):
    model, images, out = feature_set
    good_feats, good_paths = read_feature_set(out).load()
    record = json.loads((out / ".shard-00001.json").read_text())
    record["file"] = "shard-00000.safetensors"
    record["sha256"] = json.loads((out / ".shard-00000.json").read_text())["sha256"]
    (out / ".shard-00001.json").write_text(json.dumps(record))
    (out / "shard-00001.safetensors").unlink()
    summary = write_feature_set(model, [images], out, shard_size=4, progress=False)
    assert summary.written_shards == 1
    feats, paths = read_feature_set(out).load()
    assert paths == good_paths and len(set(paths)) == 10 and torch.equal(feats, good_feats)
    home.untouched(out)


def test_partials_of_a_killed_run_are_removed_on_resume_and_on_overwrite(tmp_path):
    """A killed run leaves .shard-NNNNN.<pid>-<hex>.partial.safetensors behind; the next run of
    the set (a resume, or --overwrite) removes them, under the set's lock, and nothing else."""
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(6):
        Image.new("RGB", (36, 36), (i * 30, 90, 160)).save(images / f"{i}.png")
    out = tmp_path / "feats"
    model = resnet_zoo.create("cifar_resnet20").eval()
    write_feature_set(model, [images], out, shard_size=4, progress=False)
    for overwrite in (False, True):
        stale = out / ".shard-00001.4242-deadbeef.partial.safetensors"
        stale.write_bytes(b"half a shard")
        keep = out / "notes.partial.txt"  # not a partial of atomic_write's form
        keep.write_text("mine")
        write_feature_set(model, [images], out, shard_size=4, progress=False, overwrite=overwrite)
        assert not stale.exists() and keep.read_text() == "mine"
        assert read_feature_set(out).num_images == 6


def _photos(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (36, 36), (i * 40, 80, 120)).save(directory / f"{i}.png")
    return directory


def test_lists_excel_csv_latin1_names_upper_case_suffixes_and_empty_inputs(tmp_path, monkeypatch):
    """#36 cases 17-20: a Latin-1 .txt list is one line naming the list and the line; Excel's
    "CSV UTF-8" (a byte-order mark) reads; PATHS.TXT is a list whether local or file://; an
    empty input is refused instead of scanning the current directory."""
    from resnet_zoo.features.sources import list_images

    photos = _photos(tmp_path / "photos", 2)
    latin1 = tmp_path / "list.txt"
    latin1.write_bytes(b"photos/0.png\nphotos/caf\xe9.png\n")
    with pytest.raises(resnet_zoo.InputError, match=r"list\.txt, line 2: not UTF-8") as e:
        list_images([latin1])
    assert "\n" not in str(e.value)
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbfpath,label\r\nphotos/0.png,a\r\nphotos/1.png,b\r\n")
    assert list_images([excel]) == [str(photos / "0.png"), str(photos / "1.png")]
    upper = tmp_path / "PATHS.TXT"
    upper.write_text("photos/1.png\n")
    assert list_images([upper]) == [str(photos / "1.png")]
    pytest.importorskip("pyarrow")
    assert list_images([f"file://{upper}"]) == [f"file://{photos / '1.png'}"]
    monkeypatch.chdir(photos)  # an empty input must not become "." and find these
    for empty in ("", "  "):
        with pytest.raises(resnet_zoo.InputError, match="empty input"):
            list_images([empty])


_RESUME = """
import sys
import resnet_zoo
from resnet_zoo.features import read_feature_set, write_feature_set
model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
result = write_feature_set(model, [sys.argv[1]], sys.argv[2], shard_size=4, progress=False)
print(result.written_shards, read_feature_set(sys.argv[2]).num_images)
"""


@pytest.mark.slow  # a subprocess with a deadline
def test_a_fifo_or_a_device_as_a_shard_record_is_rewritten_not_read(tmp_path):
    """#36 case 6: a FIFO blocked the run before anything was computed; a link to /dev/zero
    ended in MemoryError. Records are read as regular files of bounded size only: the resume
    writes those shards again. Run in a subprocess with a deadline (a hang fails the test)."""
    import os
    import subprocess
    import sys

    photos = _photos(tmp_path / "photos", 10)
    out = tmp_path / "feats"
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    write_feature_set(model, [photos], out, shard_size=4, progress=False)
    (out / ".shard-00000.json").unlink()
    os.mkfifo(out / ".shard-00000.json")
    (out / ".shard-00001.json").unlink()
    (out / ".shard-00001.json").symlink_to("/dev/zero")
    done = subprocess.run(
        [sys.executable, "-c", _RESUME, str(photos), str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "10"]  # the two shards written again, the set complete


@pytest.mark.parametrize("name", [".index.json", "index.json"])  # today's layout, and the first
def test_an_index_past_its_bound_is_refused_before_it_is_read(tmp_path, name):
    """#36 case 5: a 250 MB index.json took 12 s and 6.3 GB before it was refused. The bound is
    now 32 MiB, checked before a byte is read: a sparse 250 MB file is refused at once."""
    import time

    from resnet_zoo.features.format import MAX_INDEX_BYTES

    out = tmp_path / "feats"
    out.mkdir()
    with open(out / name, "wb") as f:
        f.truncate(250_000_000)
    started = time.perf_counter()
    with pytest.raises(CheckpointError, match=f"over the {MAX_INDEX_BYTES:,}"):
        read_feature_set(out)
    assert time.perf_counter() - started < 1.0 and MAX_INDEX_BYTES == 32 << 20


def test_a_file_uri_listing_skips_symlinked_directories(tmp_path):
    """#36 case 7: one sub/loop -> .. link turned 1 image into about 40 rows through file://; the
    URI listing now skips symlinked directories, as the local listing does."""
    from resnet_zoo.features.sources import list_images

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(data / "1.png")
    (data / "sub" / "loop").symlink_to("..", target_is_directory=True)
    (data / "sub" / "loop2").symlink_to("../..", target_is_directory=True)
    assert list_images([f"file://{data}"]) == [f"file://{data / '1.png'}"]
    assert list_images([str(data)]) == [str(data / "1.png")]


def test_a_fifo_named_by_a_file_uri_is_refused_not_opened(tmp_path):
    """#36 case 8: a list naming file:///.../pipe.jpg (a FIFO) blocked forever, even with
    --skip-bad. Only regular files are opened, whatever the scheme; run with a deadline."""
    import os
    import subprocess
    import sys

    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    code = (
        "from resnet_zoo.features.sources import open_image\n"
        "from resnet_zoo import InputError\n"
        f"try:\n    open_image('file://{pipe}')\nexcept InputError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "is a FIFO" in done.stdout, done.stderr[-500:]


def _small_set(tmp_path: Path, n: int, file_format: str) -> tuple[Path, Path]:
    """``n`` small photos in tmp_path/photos and their feature set (shards of 4) in tmp_path/feats."""
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(n):
        Image.new("RGB", (36, 36), (i * 30, 100, 50)).save(images / f"{i}.png")
    out = tmp_path / "feats"
    model = resnet_zoo.create("cifar_resnet20").eval()
    write_feature_set(model, [images], out, shard_size=4, file_format=file_format, progress=False)
    return images, out


def _swap_shard(out: Path, i: int, write, rows: int) -> None:
    """Replace shard ``i`` by what ``write(path)`` makes, with a truthful record (rows, sha256)
    in the index and the shard's own record."""
    from resnet_zoo.util.integrity import sha256_file

    index = json.loads((out / ".index.json").read_text())
    name = index["shards"][i]["file"]
    write(out / name)
    update = {"rows": rows, "sha256": sha256_file(out / name)}
    index["shards"][i].update(update)
    (out / ".index.json").write_text(json.dumps(index))
    record = out / f".shard-{i:05d}.json"
    (record).write_text(json.dumps({**json.loads(record.read_text()), **update}))


def test_a_parquet_shard_bomb_is_refused_from_its_footer(tmp_path):
    """#36 case 4: a 17 kB parquet shard of 2,000,000 rows of zeros (its index truthful) cost
    2.3 GB for the first 10 rows of iter_batches. Now the footer is checked against the index
    (rows at most the set's shard size, a fixed-size float list of the declared width) before a
    row is read; here with 1 GiB of address space beyond what the imports took."""
    import subprocess
    import sys

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    np = pytest.importorskip("numpy")
    images, out = _small_set(tmp_path, 6, "parquet")
    rows = 2_000_000

    def bomb(path):
        values = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * 64, dtype=np.float32)), 64)
        table = pa.table({"path": pa.array(["x.png"] * rows, pa.string()), "features": values})
        pq.write_table(table, str(path), compression="zstd")

    _swap_shard(out, 0, bomb, rows)
    assert (out / "shard-00000.parquet").stat().st_size < 2_000_000
    code = (
        "import resource\n"
        "from resnet_zoo.features import read_feature_set\n"
        "from resnet_zoo import CheckpointError\n"
        "import pyarrow.parquet\n"  # its allocator reserves address space on import: counted in the base
        "base = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) << 10\n"
        "resource.setrlimit(resource.RLIMIT_AS, (base + (1 << 30), base + (1 << 30)))\n"
        f"try:\n    next(read_feature_set({str(out)!r}).iter_batches(10))\nexcept CheckpointError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "more than the set's shard size" in done.stdout, done.stderr[-1500:]


@pytest.mark.parametrize("kind", ["parquet-strings", "parquet-decimals", "safetensors-int8", "safetensors-bool"])
def test_shards_of_another_dtype_than_the_index_declares_are_refused(tmp_path, kind):
    """#36 case 15: features as strings, structs or decimals raised raw TypeErrors; int8, bool,
    int64 and float8 features were silently cast under store_dtype float32."""
    from safetensors.torch import save_file

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    fmt = kind.split("-")[0]
    images, out = _small_set(tmp_path, 4, fmt)
    if kind == "parquet-strings":
        column = pa.array([["a"] * 64] * 4, pa.list_(pa.string(), 64))
    elif kind == "parquet-decimals":
        import decimal

        column = pa.array([[decimal.Decimal("1.5")] * 64] * 4, pa.list_(pa.decimal128(5, 2), 64))
    paths = [str(images / f"{i}.png") for i in range(4)]

    def write(path):
        if fmt == "parquet":
            pq.write_table(pa.table({"path": pa.array(paths), "features": column}), str(path))
        else:
            from resnet_zoo.features.format import encode_paths

            dtype = torch.int8 if kind.endswith("int8") else torch.bool
            save_file(
                {"features": torch.ones(4, 64, dtype=dtype)}, str(path), metadata={"paths": encode_paths(paths, path)}
            )

    _swap_shard(out, 0, write, 4)
    with pytest.raises(CheckpointError, match="declares|fixed-size list"):
        read_feature_set(out).load()


def test_an_index_of_no_shards_gives_empty_tables(feature_set):
    """#36 case 15: an index with no shards gave a raw ArrowInvalid from to_arrow()."""
    pytest.importorskip("pyarrow")
    _, _, out = feature_set
    index = json.loads((out / ".index.json").read_text())
    index.update(shards=[], num_features=None, num_bad=0)
    index.pop("run_sha256")  # an index of the older format, without the run's digest
    (out / ".index.json").write_text(json.dumps(index))
    fs = read_feature_set(out)
    assert fs.to_arrow().num_rows == 0 and fs.load()[1] == [] and len(fs.to_pandas()) == 0


@pytest.mark.slow  # waits out Google Cloud's retry limit
@pytest.mark.parametrize(
    "uri", ["gs://no-such-bucket-resnet-zoo/photos", "s3://no-such-bucket-resnet-zoo/photos?region="]
)
def test_a_cloud_uri_without_a_network_fails_in_seconds_with_one_line(uri):
    """#36 case 9: gs:// with no network blocked for 19 minutes, deaf to Ctrl-C, then raised a raw
    OSError; s3://...?region= raised a raw OSError. Now one InputError within the retry limit
    (run with a deadline; this machine has no network to the clouds)."""
    import subprocess
    import sys
    import time

    code = (
        "from resnet_zoo.features.sources import list_images\n"
        "from resnet_zoo import InputError\n"
        f"try:\n    list_images([{uri!r}])\nexcept InputError as e:\n    print('InputError', e)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("InputError"), done.stderr[-1500:]
    assert time.monotonic() - started < 90


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_parquet_shards_are_streamed_by_iter_batches(tmp_path, dtype, monkeypatch):
    """#36 case 4: iter_batches reads a parquet shard by record batches after its footer is
    checked, never the whole shard at once; the batches are load()'s rows."""
    pytest.importorskip("pyarrow")
    from test_feature_sets import _images

    import resnet_zoo.features.read as read

    data = _images(tmp_path / "imgs", 23)
    out = tmp_path / "pq"
    model = resnet_zoo.create("cifar_resnet20").eval()
    write_feature_set(model, [data], out, shard_size=10, store_dtype=dtype, file_format="parquet", progress=False)
    feats, paths = read_feature_set(out).load()

    def whole_shard(*args, **kwargs):
        raise AssertionError("a whole shard was read")

    monkeypatch.setattr(read, "read_shard", whole_shard)
    batches = list(read_feature_set(out).iter_batches(batch_size=7))
    assert [len(p) for _, p in batches] == [7, 7, 7, 2]
    assert sum((p for _, p in batches), []) == paths
    assert torch.equal(torch.cat([torch.from_numpy(b) for b, _ in batches]), feats.float())


@pytest.mark.slow
def test_ctrl_c_ends_a_cloud_listing_without_a_network(tmp_path):
    """#36 case 9: Ctrl-C was ignored for the 19 minutes of retries. SIGINT now ends the
    command within the retry limit, with exit status 130 or 1 and no traceback."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "resnet_zoo", "features", "cifar_resnet20", "gs://no-such-bucket-resnet-zoo/x",
         "--out", str(tmp_path / "out"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - started < 30 and proc.returncode in (1, 130), (proc.returncode, err[-1500:])
    assert "Traceback" not in err
