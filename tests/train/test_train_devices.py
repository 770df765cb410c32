"""#33 part 4: training on each device present (always the CPU; CUDA where there is a GPU),
the in-memory set resident on the device and augmented there, checkpoints that resume on
another device, --deterministic, --time-budget-min."""

import json

import pytest
import torch
from safetensors.torch import load_file

import resnet_zoo.device as dev
from resnet_zoo.train import TrainConfig, train
from resnet_zoo.train.inputs import augment, resident
from resnet_zoo.train.loop import fit_epochs

pytest.importorskip("sklearn")

SMALL = dict(arch="cifar_resnet20", dataset="digits", batch_size=64, limit_train=192, progress=False)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not dev.cuda_available(), reason="no CUDA device on this machine (CI has none)"),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
def test_augmentation_runs_where_the_batch_is(device):
    """Crop with padding, flip and inversion as batched ops on the device of the batch and its
    generator; the same seed on the same device gives the same batch."""
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, device=device)
    a = augment(x, 4, True, torch.Generator(device=device).manual_seed(1), invert=0.5)
    b = augment(x, 4, True, torch.Generator(device=device).manual_seed(1), invert=0.5)
    assert a.device == x.device and a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)


@pytest.mark.slow  # training runs
@pytest.mark.parametrize("device", DEVICES)
def test_a_run_trains_on_the_device_and_resumes_on_the_cpu(device, tmp_path):
    """One epoch on ``device``; the checkpoint resumes on the CPU for the second, which ends
    with the weights of an uninterrupted CPU run where ``device`` is the CPU."""
    out = tmp_path / "run"
    first = train(TrainConfig(**SMALL, epochs=2, out=str(out), device=device, warmup_epochs=0.5, resume=True))
    assert first["epoch"] == 2
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 2
    # Cut it back to epoch 1 by training a fresh run for 1 epoch on the device, then resume on the CPU.
    half = tmp_path / "half"
    cfg = dict(**SMALL, epochs=2, warmup_epochs=0.5, out=str(half), resume=True)

    class Stop(Exception):
        pass

    import resnet_zoo.train.loop as loop

    real = loop._end_of_epoch

    def stop_after_first(run, epoch, *args, **kwargs):
        real(run, epoch, *args, **kwargs)
        if epoch == 0:
            raise Stop

    loop._end_of_epoch = stop_after_first
    try:
        with pytest.raises(Stop):
            train(TrainConfig(**{**cfg, "device": device}))
    finally:
        loop._end_of_epoch = real
    resumed = train(TrainConfig(**{**cfg, "device": "cpu"}))
    assert resumed["epoch"] == 2 and len(json.loads((half / "metrics.json").read_text())) == 2
    if device == "cpu":
        a = load_file(str(out / "model.safetensors"))
        b = load_file(str(half / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # training runs
def test_deterministic_runs_give_bit_identical_weights(tmp_path):
    for name in ("a", "b"):
        train(TrainConfig(**SMALL, epochs=1, out=str(tmp_path / name), deterministic=True, device="cpu"))
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # training runs
def test_time_budget_fits_the_epochs_after_the_first(tmp_path, monkeypatch):
    cfg = TrainConfig(**SMALL, epochs=50, out="o", time_budget_min=1.0, schedule="cosine", warmup_epochs=1)
    assert fit_epochs(cfg, 7.0) == 8 and fit_epochs(cfg, 0.5) == 50 and fit_epochs(cfg, 120.0) == 1
    out = tmp_path / "budget"
    # A budget of 0.1 s: the first epoch always runs, and is all that fits.
    final = train(
        TrainConfig(**SMALL, epochs=5, out=str(out), time_budget_min=0.1 / 60, schedule="cosine", warmup_epochs=0.5)
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert final["epoch"] == 1 and [m["planned_epochs"] for m in metrics] == [1]
    # Where 2 of 5 epochs fit, the cosine schedule is refitted to end with the second epoch
    # (3 steps an epoch: the last lr is 0.0146, where the 5-epoch schedule would be at 0.087).
    import resnet_zoo.train.loop as loop

    monkeypatch.setattr(loop, "fit_epochs", lambda cfg, seconds: 2)
    out = tmp_path / "two"
    train(TrainConfig(**SMALL, epochs=5, out=str(out), time_budget_min=1.0, schedule="cosine", warmup_epochs=0.5))
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["planned_epochs"] for m in metrics] == [2, 2] and metrics[-1]["lr"] == pytest.approx(0.01464, abs=1e-4)
    with pytest.raises(Exception, match="time_budget_min"):
        TrainConfig(**SMALL, out="o", time_budget_min=0)


def test_resident_moves_only_in_memory_sets():
    from resnet_zoo.train.datasets import ImageSet

    data = ImageSet(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4), ["a", "b", "c", "d"])
    assert resident(data, torch.device("cpu")) is data and data.device == torch.device("cpu")
    lazy = ImageSet(None, torch.arange(2), ["a", "b"], files=[], file_transform=None)
    assert resident(lazy, torch.device("cuda", 0)) is lazy


@pytest.mark.parametrize("device", DEVICES)
def test_the_epoch_order_is_drawn_on_the_device_and_split_between_ranks(device):
    from resnet_zoo.train.loop import EpochOrder

    where = torch.device(device)
    ranks = [EpochOrder(10, 3, r, seed=7, device=where) for r in range(3)]
    shares = [o.indices(2) for o in ranks]
    assert all(s.device.type == device and len(s) == 4 == len(o) for s, o in zip(shares, ranks))
    assert set(torch.cat(shares).tolist()) == set(range(10))  # every image, each rank the same steps
    assert torch.equal(ranks[0].indices(2), shares[0]) and not torch.equal(ranks[0].indices(3), shares[0])
