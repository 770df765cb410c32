"""Training datasets read from local files in their real on-disk formats."""

import pytest
import torch
from PIL import Image

from resnet_zoo import InputError
from resnet_zoo.train.datasets import (
    digits_image,
    folder_splits,
    materialize,
    read_cifar,
    read_digits,
    read_folder,
    split_holdout,
)


def _write_cifar(root, kind, n_train=(3, 2, 2, 2, 2), n_test=4, seed=0):
    """Files in the published binary layout, with known pixels and labels."""
    g = torch.Generator().manual_seed(seed)
    n_classes, label_bytes = (10, 1) if kind == "cifar10" else (100, 2)
    sub = root / ("cifar-10-batches-bin" if kind == "cifar10" else "cifar-100-binary")
    sub.mkdir(parents=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if kind == "cifar10" else ["train.bin"]
    counts = list(n_train) if kind == "cifar10" else [sum(n_train)]
    written = {}
    for name, n in list(zip(names, counts)) + [("test_batch.bin" if kind == "cifar10" else "test.bin", n_test)]:
        labels = torch.randint(0, n_classes, (n,), generator=g)
        pixels = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        rows = []
        for lab, px in zip(labels.tolist(), pixels):
            head = bytes([lab]) if label_bytes == 1 else bytes([lab // 5, lab])  # coarse, fine
            rows.append(head + bytes(px.flatten().tolist()))
        (sub / name).write_bytes(b"".join(rows))
        written[name] = (labels, pixels)
    meta = "batches.meta.txt" if kind == "cifar10" else "fine_label_names.txt"
    (sub / meta).write_text("\n".join(f"class{i}" for i in range(n_classes)) + "\n")
    return written


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_binary_reader(tmp_path, kind):
    written = _write_cifar(tmp_path, kind)
    train = read_cifar(tmp_path, kind, train=True)
    test = read_cifar(tmp_path, kind, train=False)
    train_names = [n for n in written if "test" not in n]
    expected_labels = torch.cat([written[n][0] for n in train_names])
    expected_pixels = torch.cat([written[n][1] for n in train_names])
    assert torch.equal(train.labels, expected_labels)
    assert torch.equal(train.images, expected_pixels)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    test_name = "test_batch.bin" if kind == "cifar10" else "test.bin"
    assert torch.equal(test.labels, written[test_name][0])
    assert train.classes[3] == "class3"
    # The first record's red plane is the first 1024 pixel bytes, row-major.
    raw = (
        tmp_path / ("cifar-10-batches-bin" if kind == "cifar10" else "cifar-100-binary") / train_names[0]
    ).read_bytes()
    offset = 1 if kind == "cifar10" else 2
    assert train.images[0, 0, 0, :5].tolist() == list(raw[offset : offset + 5])
    assert train.images[0, 1, 0, 0].item() == raw[offset + 1024]


def test_cifar_reader_errors(tmp_path):
    with pytest.raises(InputError, match="data_batch_1.bin"):
        read_cifar(tmp_path, "cifar10", train=True)
    _write_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(InputError, match="whole number of 3073-byte"):
        read_cifar(tmp_path, "cifar10", train=True)


def test_folder_reader(tmp_path):
    for cls, colour in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (40 + i, 30), colour).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")

    def transform(path):
        return torch.zeros(3, 8, 8, dtype=torch.uint8)

    data = read_folder(tmp_path, transform)
    assert data.classes == ["cat", "dog"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert [p.name for p in data.files] == ["0.png", "1.png", "2.png"] * 2
    with pytest.raises(InputError, match="two class folders"):
        read_folder(tmp_path / "cat", transform)


def test_digits_and_fixed_holdout():
    pytest.importorskip("sklearn")

    from resnet_zoo.inference.images import to_uint8_tensor

    data = read_digits(to_uint8_tensor)
    assert len(data) == 1797 and data.classes == [str(i) for i in range(10)]
    train, val = split_holdout(data, 0.2, seed=0)
    train2, val2 = split_holdout(data, 0.2, seed=0)
    assert len(val) == 359 and len(train) == 1438
    assert torch.equal(val.images, val2.images) and torch.equal(val.labels, val2.labels)
    _, other = split_holdout(data, 0.2, seed=1)
    assert not torch.equal(other.labels, val.labels)
    # Dark ink on white paper: the corners of a digit are paper.
    img = digits_image([0] * 64)
    assert img.getpixel((0, 0)) == 255 and digits_image([16] * 64).getpixel((3, 3)) == 0


def _classes(root, names=("cat", "dog"), n=2):
    for cls in names:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(root / cls / f"{i}.png")


@pytest.mark.parametrize("held", ["val", "test", "validation"])
def test_split_layouts_are_recognised(tmp_path, held):
    _classes(tmp_path / "train")
    _classes(tmp_path / held)
    assert folder_splits(tmp_path) == (tmp_path / "train", tmp_path / held)
    assert folder_splits(tmp_path / "train") is None  # a plain folder of classes


@pytest.mark.parametrize("folders", [("train",), ("test", "val"), ("training", "cats"), ("train", "test", "extra")])
def test_split_like_folders_without_a_recognised_pair_are_refused(tmp_path, folders):
    for name in folders:
        _classes(tmp_path / name)
    with pytest.raises(InputError, match="split"):
        folder_splits(tmp_path)


def test_materialize_decodes_once_into_uint8_and_respects_its_budget(tmp_path):
    _classes(tmp_path, n=3)
    calls = []

    def transform(path):
        calls.append(path)
        return torch.full((3, 8, 8), int(path.stem), dtype=torch.uint8)

    lazy = read_folder(tmp_path, transform)
    assert materialize(lazy, max_bytes=10) is lazy  # over budget: left to decode per batch
    calls.clear()
    data = materialize(lazy)
    assert data.images.shape == (6, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2] and len(calls) == 6
    assert data.labels.tolist() == lazy.labels.tolist() and data.classes == lazy.classes
