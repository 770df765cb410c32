"""#35 part 5: a parquet feature set's directory opens in pandas, pyarrow and Hugging Face
datasets as it is (nothing but shards among its visible names), and a set of the first layout
(index.json, run.json, shard-NNNNN.json beside the shards) stays readable and resumes."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import resnet_zoo
from resnet_zoo.features import read_feature_set, write_feature_set

pa = pytest.importorskip("pyarrow", reason="the arrow extra (pyarrow) is not installed")


@pytest.fixture(scope="module")
def parquet_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    images = root / "photos"
    images.mkdir()
    for i in range(11):
        Image.new("RGB", (36, 36), (i * 20, 100, 200 - i * 10)).save(images / f"{i:02d}.png")
    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    out = root / "feats"
    write_feature_set(model, [images], out, shard_size=4, file_format="parquet", progress=False)
    return model, images, out


def _reference(out: Path):
    feats, paths = read_feature_set(out).load()
    return feats.numpy(), paths


def test_pandas_pyarrow_and_dataset_open_the_directory(parquet_set):
    import pandas as pd
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    _, _, out = parquet_set
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"shard-0000{i}.parquet" for i in range(3)
    ]
    feats, paths = _reference(out)
    frame = pd.read_parquet(out)
    assert list(frame["path"]) == paths and np.array_equal(np.stack(frame["features"].to_numpy()), feats)
    table = pq.read_table(out)
    assert table.column("path").to_pylist() == paths and table.num_rows == 11
    dataset = ds.dataset(out, format="parquet")
    assert len(dataset.files) == 3 and dataset.to_table().column("path").to_pylist() == paths
    values = dataset.to_table().column("features").combine_chunks().flatten().to_numpy()
    assert np.array_equal(values.reshape(11, -1), feats)


def test_hugging_face_datasets_loads_the_directory(parquet_set, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    _, _, out = parquet_set
    feats, paths = _reference(out)
    loaded = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf"), split="train")
    assert loaded.num_rows == 11 and loaded["path"] == paths
    assert np.allclose(np.array(loaded["features"], dtype=np.float32), feats)


def _first_layout(src: Path, dst: Path) -> Path:
    """The set as the first layout wrote it: its bookkeeping files without the leading dot."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name == ".lock":
            continue
        name = p.name[1:] if p.name.startswith(".") else p.name
        (dst / name).write_bytes(p.read_bytes())
    return dst


def test_a_set_of_the_first_layout_reads_and_resumes_under_todays_names(parquet_set, tmp_path):
    model, images, out = parquet_set
    feats, paths = _reference(out)
    old = _first_layout(out, tmp_path / "old")
    assert (old / "index.json").is_file() and (old / "shard-00000.json").is_file()
    got, got_paths = read_feature_set(old).load()
    assert got_paths == paths and np.array_equal(got.numpy(), feats)
    shards = {p.name: p.read_bytes() for p in old.glob("shard-*.parquet")}
    (old / "index.json").unlink()  # a run killed before its index: the resume finds its shards
    again = write_feature_set(model, [images], old, shard_size=4, file_format="parquet", progress=False)
    assert again.written_shards == 0 and again.shards == 3
    assert {p.name: p.read_bytes() for p in old.glob("shard-*.parquet")} == shards
    assert sorted(p.name for p in old.iterdir() if not p.name.startswith(".")) == sorted(shards)
    assert read_feature_set(old).index == read_feature_set(out).index
