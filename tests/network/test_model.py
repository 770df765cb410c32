"""The labml reference's ResNetBase and the classifier built on it, under torchvision's names."""

import pytest
import torch
from conftest import perturb_bn, reference_model1
from torch import nn

import resnet_zoo
from resnet_zoo import (
    BottleneckResidualBlock,
    ConfigError,
    InputError,
    ResidualBlock,
    ResNet,
    ResNetBase,
    ShortcutProjection,
    ZeroPadShortcut,
    convert_state_dict,
    create,
)


def _blocks(m: ResNetBase) -> list[nn.Module]:
    return [b for stage in m.stages() for b in stage]


def test_seed_defaults():
    m = ResNetBase([2, 2], [16, 32])
    c = m.config
    assert (c.img_channels, c.first_kernel_size, c.bottlenecks) == (3, 7, None)
    # Stem: k x k conv, stride 2, padding k // 2, with bias; then batch norm, nothing else.
    assert m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2) and m.conv1.padding == (3, 3)
    assert m.conv1.bias is not None and isinstance(m.bn1, nn.BatchNorm2d)
    assert isinstance(m.act1, nn.Identity) and isinstance(m.maxpool, nn.Identity)
    assert [name for name, _ in m.named_children()] == ["conv1", "bn1", "act1", "maxpool", "layer1", "layer2"]
    assert all(isinstance(b, ResidualBlock) for b in _blocks(m))
    assert isinstance(m.layer1[0].downsample, nn.Identity)  # 16 -> 16, stride 1
    assert isinstance(m.layer2[0].downsample, ShortcutProjection)  # 16 -> 32, stride 2
    assert m.layer2[0].downsample.conv is m.layer2[0].downsample[0]
    assert m.layer2[0].downsample[0].kernel_size == (1, 1)
    assert m.layer2[0].downsample[0].stride == (2, 2)
    out = m(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 32)


def test_seed_forward_is_stem_blocks_and_global_average_pool():
    m = ResNetBase([1, 1], [8, 16]).eval()
    x = torch.randn(2, 3, 20, 20)
    expected = m.layer2(m.layer1(m.bn1(m.conv1(x)))).view(2, 16, -1).mean(dim=-1)
    torch.testing.assert_close(m(x), expected)


def test_img_channels_1_and_first_kernel_size():
    m = ResNetBase([1, 1, 1], [8, 16, 32], img_channels=1, first_kernel_size=3)
    assert m.conv1.in_channels == 1 and m.conv1.kernel_size == (3, 3) and m.conv1.padding == (1, 1)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 32)


def test_bottleneck_path():
    m = ResNetBase([2, 2], [32, 64], bottlenecks=[8, 16])
    assert all(isinstance(b, BottleneckResidualBlock) for b in _blocks(m))
    b = m.layer2[0]
    assert (b.conv1.in_channels, b.conv1.out_channels) == (32, 16)
    assert b.conv1.kernel_size == (1, 1) and b.conv3.kernel_size == (1, 1)
    # The stride sits on the 3x3 conv.
    assert b.conv1.stride == (1, 1) and b.conv2.stride == (2, 2) and b.conv2.kernel_size == (3, 3)
    assert (b.conv3.in_channels, b.conv3.out_channels) == (16, 64)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 64)


@pytest.mark.parametrize("bottlenecks", [None, [4, 8, 16, 32]])
def test_map_is_halved_at_every_stage_after_the_first(bottlenecks):
    m = ResNetBase([1, 2, 1, 1], [8, 16, 32, 64], bottlenecks=bottlenecks)
    maps = m.forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)
    assert [t.shape[-1] for t in maps] == [32, 32, 16, 8, 4]
    assert [t.shape[1] for t in maps] == [8, 8, 16, 32, 64]
    assert [f.reduction for f in m.feature_info] == [2, 2, 4, 8, 16]
    assert [f.module for f in m.feature_info] == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_reference_stride_option_halves_only_once():
    m = ResNetBase([1, 1, 1], [8, 16, 32], stage_strides=(2, 1, 1))
    maps = m.forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)
    assert [t.shape[-1] for t in maps] == [32, 16, 16, 16]
    assert [f.reduction for f in m.feature_info] == [2, 4, 4, 4]


@pytest.mark.parametrize("bottlenecks", [None, [8, 16, 16]])
def test_labml_reference_state_dict_loads_strictly_and_matches(bottlenecks):
    labml_resnet = pytest.importorskip("labml_nn.resnet")
    n_blocks, n_channels = [2, 1, 2], [16, 32, 64]
    ref = labml_resnet.ResNetBase(n_blocks, n_channels, bottlenecks, img_channels=3, first_kernel_size=7)
    perturb_bn(ref)
    ref.eval()
    ours = ResNetBase(n_blocks, n_channels, bottlenecks, 3, 7, stage_strides=(2, 1, 1)).eval()
    # The reference numbers its blocks in one flat sequence: the converter finds the stages
    # from the weights alone, and from the config where one is given.
    for converted in (convert_state_dict(ref.state_dict()), convert_state_dict(ref.state_dict(), n_blocks=n_blocks)):
        ours.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)
    # The default follows the description instead: halved at stages 2 and 3 (the reference's
    # first block has a projection shortcut only because of its stride 2, so weights differ).
    default = ResNetBase(n_blocks, n_channels, bottlenecks, 3, 7).eval()
    assert ours.forward_features(x).shape[-1] == 12
    assert default.forward_features(x).shape[-1] == 6


def test_zero_pad_shortcut_is_strided_identity_padded_evenly():
    s = ZeroPadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 9, 9)
    y = s(x)
    assert y.shape == (2, 32, 5, 5)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0
    assert sum(p.numel() for p in s.parameters()) == 0


def _layers(model: nn.Module) -> list[tuple]:
    """Every conv, BN and linear layer in definition order, with its hyper-parameters."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            out.append(
                (
                    "conv",
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,
                    m.stride,
                    m.padding,
                    m.groups,
                    m.bias is not None,
                )
            )
        elif isinstance(m, nn.BatchNorm2d):
            out.append(("bn", m.num_features, m.eps, m.momentum))
        elif isinstance(m, nn.Linear):
            out.append(("linear", m.in_features, m.out_features, m.bias is not None))
    return out


def test_cifar_resnet14_is_seed_model1_module_for_module():
    assert _layers(create("cifar_resnet14")) == _layers(reference_model1())


def test_resnet26_is_seed_model2_module_for_module():
    tv = pytest.importorskip("torchvision.models.resnet")
    reference = tv.ResNet(tv.Bottleneck, [2, 2, 2, 2], num_classes=10)
    ours = create("resnet26", num_classes=10)
    assert _layers(ours) == _layers(reference)
    assert list(ours.state_dict()) == list(reference.state_dict())
    assert isinstance(ours.maxpool, nn.MaxPool2d)
    assert (ours.maxpool.kernel_size, ours.maxpool.stride, ours.maxpool.padding) == (3, 2, 1)


def test_resnet18_intermediates_at_224_match_seed_004():
    m = create("resnet18").eval()
    with torch.no_grad():
        maps = m.forward_intermediates(torch.randn(1, 3, 224, 224), intermediates_only=True)
    # timm's maps: the stem's activation at stride 2 (before the max-pool), then each stage
    assert [tuple(t.shape[1:]) for t in maps] == [
        (64, 112, 112),
        (64, 56, 56),
        (128, 28, 28),
        (256, 14, 14),
        (512, 7, 7),
    ]


def test_forward_intermediates_indices_and_early_stop():
    m = create("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    full = m.forward_intermediates(x, intermediates_only=True)
    some = m.forward_intermediates(x, [-1, 1], intermediates_only=True)
    assert len(some) == 2
    torch.testing.assert_close(some[0], full[-1])
    torch.testing.assert_close(some[1], full[1])
    with pytest.raises(ConfigError, match="out of range"):
        m.forward_intermediates(x, [5], intermediates_only=True)


def test_init_is_kaiming_and_zero_init_residual():
    m = ResNet([1, 1], [64, 128], [32, 64], num_classes=10)
    conv = m.layer2[0].conv2  # 3x3, 64 -> 64, fan_out = 64 * 9
    expected_std = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    assert torch.all(m.layer2[0].bn3.weight == 1) and torch.all(m.bn1.bias == 0)
    z = ResNet([1, 1], [64, 128], [32, 64], num_classes=10, zero_init_residual=True)
    assert all(torch.all(b.bn3.weight == 0) for b in _blocks(z))
    assert torch.all(z.layer1[0].bn1.weight == 1)
    zb = create("resnet18", zero_init_residual=True)
    assert all(torch.all(b.bn2.weight == 0) for b in _blocks(zb))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"])
@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_same_seed_same_weights_as_torchvisions_builder(arch, zero_init_residual):
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(7)
    theirs = getattr(tv, arch)(zero_init_residual=zero_init_residual).state_dict()
    torch.manual_seed(7)
    ours = create(arch, zero_init_residual=zero_init_residual).state_dict()
    assert list(ours) == list(theirs)  # key for key, in torchvision's order
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "another init, or another order of draws"


def test_classifier_api():
    m = create("cifar_resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    last_map = m.forward_features(x)  # timm's: the unpooled map
    assert last_map.shape == (2, 64, 8, 8)
    feats = m.forward_head(last_map, pre_logits=True)
    torch.testing.assert_close(feats, last_map.mean(dim=(2, 3)))
    torch.testing.assert_close(m.forward_pooled(x), feats)
    assert feats.shape == (2, 64)
    torch.testing.assert_close(m(x), m.fc(feats))
    torch.testing.assert_close(m.forward_head(last_map), m(x))
    m.reset_classifier(5)
    assert m(x).shape == (2, 5) and m.config.num_classes == 5 and m.num_classes == 5
    m.reset_classifier(0)
    assert isinstance(m.fc, nn.Identity)
    torch.testing.assert_close(m(x), feats)
    headless = create("resnet18", num_classes=0)
    assert headless(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    assert not any(k.startswith("fc.") for k in headless.state_dict())


def test_resnetbase_refuses_a_head():
    with pytest.raises(ConfigError, match="num_classes"):
        ResNetBase([1], [8], num_classes=10)


def test_resnet_is_a_resnetbase_with_the_same_names():
    base = ResNetBase([1, 1], [8, 16])
    cls = ResNet([1, 1], [8, 16], num_classes=3)
    assert isinstance(cls, ResNetBase)
    assert set(cls.state_dict()) - set(base.state_dict()) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(3, 32, 32), "4-d"),
        (torch.randn(1, 1, 32, 32), "input channels"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_inputs_raise_input_error(x, match):
    m = create("cifar_resnet20")
    with pytest.raises(InputError, match=match):
        m(x)
    with pytest.raises(InputError, match=match):
        m.forward_intermediates(x, intermediates_only=True)


def test_blocks_validate_their_arguments():
    with pytest.raises(ConfigError, match="stride"):
        ResidualBlock(8, 8, 0)
    with pytest.raises(ConfigError, match="groups"):
        BottleneckResidualBlock(8, 6, 8, 1, groups=4)
    with pytest.raises(ConfigError, match="in_channels"):
        ShortcutProjection(-1, 8, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "cifar_resnet20"])
def test_fx_feature_extraction_and_tracing_see_no_input_checks(name):
    """The input checks step aside while FX, jit.trace and ONNX trace: no Proxy error, no
    TracerWarning; the nodes that feature_info names give the maps forward_intermediates gives."""
    import warnings

    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = resnet_zoo.create(name).eval()
    _, eval_nodes = fx.get_graph_node_names(model)
    modules = [i.module for i in model.feature_info]
    assert all(any(n == m or n.startswith(m + ".") for n in eval_nodes) for m in modules)
    extractor = fx.create_feature_extractor(model, return_nodes={m: str(i) for i, m in enumerate(modules)})
    x = torch.randn(2, model.config.img_channels, 64, 64)
    with torch.no_grad():
        got = extractor(x)
        want = model.forward_intermediates(x, intermediates_only=True)
    assert [got[str(i)].shape for i in range(len(modules))] == [w.shape for w in want]
    for i, w in enumerate(want):
        torch.testing.assert_close(got[str(i)], w)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, x)
    assert [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)] == []
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    # The checks still hold when the model runs.
    with pytest.raises(resnet_zoo.InputError):
        model(torch.randn(2, 5, 32, 32))
