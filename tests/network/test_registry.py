"""Every registered model, cheaply: builds, trains a step, has the published size."""

import pytest
import torch

import resnet_zoo
from resnet_zoo import ConfigError, ResNetConfig, UnknownModelError, create
from resnet_zoo.registry import get_entry

ALL = resnet_zoo.list_models()

REQUIRED = (
    "resnet18 resnet26 resnet34 resnet50 resnet101 resnet152 wide_resnet50_2 wide_resnet101_2 "
    "resnext50_32x4d resnext101_32x8d cifar_resnet14 cifar_resnet20 cifar_resnet32 cifar_resnet44 "
    "cifar_resnet56 cifar_resnet110 cifar_resnet1202"
).split()

TORCHVISION_NAMES = [n for n in ALL if not n.startswith("cifar_") and n != "resnet26"]


def test_required_names_are_registered():
    assert set(REQUIRED) <= set(ALL)


def _small_input(name: str, batch: int = 2) -> torch.Tensor:
    entry = get_entry(name)
    size = 32 if entry.input_size <= 32 else 64  # the smallest that keeps a 2x2 last map
    return torch.randn(batch, entry.config.img_channels, size, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = create(name)
    x = _small_input(name)
    out = model(x)
    assert out.shape == (2, model.config.num_classes)
    out.logsumexp(dim=1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_feature_info_matches_the_maps(name):
    # Training-mode batch norm: a fresh 1202-layer net in eval mode overflows (unit running
    # variance does not normalise 600 residual sums), which says nothing about the shapes.
    model = create(name)
    x = _small_input(name, batch=2)
    with torch.no_grad():
        maps = model.forward_intermediates(x, intermediates_only=True)
        pooled = model.forward_pooled(x)
        last_map = model.forward_features(x)
    assert len(maps) == len(model.feature_info) == model.config.n_stages + 1
    for t, info in zip(maps, model.feature_info):
        assert t.shape[1] == info.channels
        assert x.shape[-1] // t.shape[-1] == info.reduction
        assert dict(model.named_modules())[info.module] is not None
    torch.testing.assert_close(pooled, maps[-1].mean(dim=(2, 3)))
    torch.testing.assert_close(last_map, maps[-1])  # timm's forward_features: the unpooled map


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_parameter_count_equals_torchvision(name):
    tvm = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        theirs = getattr(tvm, name)()
        ours = create(name)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items() if "num_batches" not in k}.__len__() == len(
        [k for k in theirs.state_dict() if "num_batches" not in k]
    )


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("cifar_resnet20", {}, 269_722),  # paper: 0.27M
        ("cifar_resnet14", {}, 195_738),  # the labml reference's CIFAR model (model1)
        ("resnet26", {"num_classes": 10}, 13_966_666),  # the labml reference's bottleneck model (model2)
        ("cifar_resnet110", {}, 1_727_962),  # paper: 1.7M
        ("cifar_resnet1202", {}, 19_421_274),  # paper: 19.4M
    ],
)
def test_published_parameter_counts(name, kwargs, expected):
    with torch.device("meta"):
        model = create(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_cifar_depths_follow_6n_plus_2():
    for n, name in [
        (3, "cifar_resnet20"),
        (5, "cifar_resnet32"),
        (7, "cifar_resnet44"),
        (9, "cifar_resnet56"),
        (18, "cifar_resnet110"),
        (200, "cifar_resnet1202"),
    ]:
        c = resnet_zoo.get_config(name)
        assert c.n_blocks == (n, n, n) and c.shortcut == "zero_pad" and c.num_classes == 10
        with torch.device("meta"):
            model = create(name)
        weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weighted) == 6 * n + 2


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as info:
        create("resnet05")
    msg = str(info.value)
    assert "resnet05" in msg and "resnet50" in msg
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownModelError, match="cifar_resnet20"):
        resnet_zoo.get_config("cifar_resnet2O")


def test_overrides_are_checked():
    with pytest.raises(ConfigError, match="stem_pol"):
        create("resnet18", stem_pol=False)
    with pytest.raises(ConfigError, match="num_classes"):
        create("resnet18", num_classes=-3)
    with pytest.raises(ConfigError, match="img_channels"):
        create("resnet18", img_channels=0)
    m = create("resnet18", num_classes=7, img_channels=1, stem_pool=False)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert m.config.stem_pool is False


def test_register_model_refuses_duplicates_and_bad_names():
    config = ResNetConfig(n_blocks=(1,), n_channels=(8,), num_classes=2)
    resnet_zoo.register_model("test_tiny_net", config, input_size=16)
    try:
        assert "test_tiny_net" in resnet_zoo.list_models("test_*")
        assert create("test_tiny_net")(torch.randn(2, 3, 16, 16)).shape == (2, 2)
        with pytest.raises(ConfigError, match="already registered"):
            resnet_zoo.register_model("test_tiny_net", config)
        resnet_zoo.register_model("test_tiny_net", config, overwrite=True)
    finally:
        resnet_zoo.registry._REGISTRY.pop("test_tiny_net", None)
    with pytest.raises(ConfigError, match="dots"):
        resnet_zoo.register_model("tiny.v2", config)
    with pytest.raises(ConfigError, match="ResNetConfig"):
        resnet_zoo.register_model("tiny", {"n_blocks": [1]})


def test_list_models_pattern():
    assert resnet_zoo.list_models("resnext*") == ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]
    assert resnet_zoo.list_models("nothing*") == []


@pytest.mark.parametrize(
    "out_indices, reductions",
    [
        (None, [2, 4, 8, 16, 32]),  # timm's: map 0 is the stem's activation, before the max-pool
        ((1, 2), [4, 8]),
        ((-1,), [32]),
        ((0,), [2]),
        (2, [16, 32]),
    ],
)
def test_features_only(out_indices, reductions):
    m = create("resnet50", features_only=True, out_indices=out_indices).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = m(x)
    assert [info.reduction for info in m.feature_info] == reductions
    assert [t.shape[1] for t in maps] == [info.channels for info in m.feature_info]
    assert [64 // t.shape[-1] for t in maps] == reductions
    assert m.feature_info.module_name() == [["act1", "layer1", "layer2", "layer3", "layer4"][i] for i in m.out_indices]
    if out_indices == (1, 2):  # later stages are not built
        assert [name for name, _ in m.named_children()] == ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2"]


def test_features_only_state_dict_is_a_subset_of_the_classifier():
    full = create("resnet18")
    feats = create("resnet18", features_only=True, out_indices=(1,))
    assert set(feats.state_dict()) < set(full.state_dict())
    feats.load_state_dict({k: v for k, v in full.state_dict().items() if k in feats.state_dict()})


def test_features_only_bad_indices():
    with pytest.raises(ConfigError, match="out of range"):
        create("resnet18", features_only=True, out_indices=(5,))
    with pytest.raises(ConfigError, match="features_only"):
        create("resnet18", out_indices=(1,))


def test_macs_are_torchs_flop_counter_and_the_published_figures():
    """count_macs is torch's FlopCounterMode / 2; it equals a count of every conv and linear
    layer's multiply-accumulates (written here with hooks) and the figures torchvision and timm
    publish (ResNet-50: 4.09 "GFLOPS")."""
    from torch import nn

    from resnet_zoo.summary import count_macs, summarize

    def by_hooks(model, shape):
        total = 0

        def hook(m, inputs, out):
            nonlocal total
            if isinstance(m, nn.Conv2d):
                total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            else:
                total += out.numel() * m.in_features

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            model(torch.zeros(shape))
        for h in handles:
            h.remove()
        return total

    for name, shape in (
        ("resnet18", (1, 3, 224, 224)),
        ("resnext50_32x4d", (2, 3, 96, 64)),
        ("cifar_resnet20", (1, 3, 32, 32)),
    ):
        model = create(name).eval()
        assert count_macs(model, shape) == by_hooks(model, shape), name
    assert round(summarize("resnet50").gmacs, 4) == 4.0892
    assert round(summarize("cifar_resnet20").gmacs, 4) == 0.0406
