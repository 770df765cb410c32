"""timm's model API, checked with timm's own tools; TorchScript, FX and the export paths."""

import io
import warnings

import pytest
import torch
from conftest import perturb_bn, rel_err
from images import sample_photos

import resnet_zoo
from resnet_zoo import ResNetBase, create, list_models
from resnet_zoo.inference.images import Preprocess, load_image
from resnet_zoo.manifest import PretrainedInfo

timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_data_config  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

TIMM_KEYS = (
    "input_size",
    "crop_pct",
    "interpolation",
    "mean",
    "std",
    "num_classes",
    "first_conv",
    "classifier",
    "license",
    "hf_hub_id",
)
# One of each block kind, shortcut and stem: basic, bottleneck, grouped, CIFAR option A.
KINDS = ["resnet18", "resnet50", "resnext50_32x4d", "cifar_resnet20"]


def _x(name: str, batch: int = 2) -> torch.Tensor:
    size = 32 if name.startswith("cifar") else 64
    return torch.randn(batch, 3, size, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_pretrained_cfg_is_a_timm_mapping_and_timm_resolves_it(name):
    model = create(name)
    cfg = model.pretrained_cfg
    assert dict(cfg) == dict(model.default_cfg)
    assert all(k in cfg for k in TIMM_KEYS)
    size = 32 if name.startswith("cifar") else 224
    assert cfg["input_size"] == (3, size, size) and cfg["num_classes"] == model.num_classes
    assert dict(model.named_modules())[cfg["first_conv"]] is model.conv1
    assert dict(model.named_modules())[cfg["classifier"]] is model.fc
    data = resolve_data_config({}, model=model)
    p = cfg.preprocessing
    assert data["input_size"] == (3, p.input_size, p.input_size) and data["crop_pct"] == p.crop_pct
    assert tuple(data["mean"]) == p.mean and tuple(data["std"]) == p.std
    assert data["interpolation"] == p.interpolation


def test_timm_transform_of_our_cfg_is_our_preprocessing():
    model = create("cifar_resnet20.cifar10", pretrained=True)
    assert model.pretrained_cfg["label_names"][0] == "airplane" and model.pretrained_cfg["top1"] == 91.73
    theirs = create_transform(**resolve_data_config({}, model=model))
    ours = Preprocess(model.pretrained_cfg.preprocessing)
    for name, path in sample_photos().items():
        img = load_image(path)
        torch.testing.assert_close(ours(img), theirs(img), rtol=0, atol=0, msg=name)


def test_hub_weights_give_their_hub_id():
    info = PretrainedInfo(
        name="resnet50.a1_in1k", source="hf-hub:timm/resnet50.a1_in1k@" + "0" * 40, license="apache-2.0"
    )
    model = create("resnet50")
    model.pretrained_cfg = info
    assert model.pretrained_info is info
    assert model.pretrained_cfg["hf_hub_id"] == "timm/resnet50.a1_in1k"
    assert model.pretrained_cfg["tag"] == "a1_in1k" and model.pretrained_cfg["license"] == "apache-2.0"
    with pytest.raises(resnet_zoo.ConfigError, match="PretrainedInfo"):
        model.pretrained_cfg = {"mean": (0.5,)}


@pytest.mark.parametrize("name", ["resnet50", "cifar_resnet56"])
@pytest.mark.parametrize("coarse", [False, True])
def test_layer_decay_groups_follow_the_depth(name, coarse):
    model = create(name)
    opt = create_optimizer_v2(model, "sgd", lr=0.1, weight_decay=1e-4, layer_decay=0.5)
    n_blocks = sum(model.config.n_blocks)
    scale_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            scale_of[id(p)] = group["lr_scale"]
    layers = n_blocks + 2  # the stem, each block, the head
    assert scale_of[id(model.fc.weight)] == 1.0
    assert scale_of[id(model.conv1.weight)] == pytest.approx(0.5 ** (layers - 1))
    assert scale_of[id(model.stages()[-1][-1].conv1.weight)] == pytest.approx(0.5)
    assert scale_of[id(model.layer1[0].conv1.weight)] == pytest.approx(0.5**n_blocks)
    from timm.models import group_parameters

    groups = group_parameters(model, model.group_matcher(coarse=coarse))
    expected = 1 + (model.config.n_stages if coarse else n_blocks) + 1
    assert len(groups) == expected
    assert groups[0] == ["conv1.weight", "bn1.weight", "bn1.bias"] and groups[len(groups) - 1] == [
        "fc.weight",
        "fc.bias",
    ]


@pytest.mark.parametrize("name", KINDS)
def test_feature_info_has_timms_accessors(name):
    from timm.models import FeatureInfo

    model = create(name)
    info = model.feature_info
    theirs = FeatureInfo([dict(fi) for fi in info], out_indices=tuple(range(len(info))))
    assert info.channels() == theirs.channels() == [fi.channels for fi in info]
    assert info.reduction() == theirs.reduction() and info.module_name() == theirs.module_name()
    assert info.channels(-1) == model.num_features and info.reduction([0, 1]) == theirs.reduction([0, 1])
    assert info.get_dicts(keys=["num_chs"]) == [{"num_chs": c} for c in theirs.channels()]
    assert info[0]["num_chs"] == info[0].num_chs == info[0].channels
    feats = create(name, features_only=True, out_indices=(1, 3))
    assert feats.feature_info.channels() == [info.channels(1), info.channels(3)]


@pytest.mark.parametrize("name", KINDS)
def test_forward_features_is_the_map_and_forward_head_pools(name):
    model = create(name).eval()
    x = _x(name)
    with torch.no_grad():
        last = model.forward_features(x)
        assert last.ndim == 4 and last.shape[1] == model.num_features
        pooled = model.forward_head(last, pre_logits=True)
        torch.testing.assert_close(pooled, last.mean(dim=(2, 3)))
        torch.testing.assert_close(model.forward_head(last), model(x))
        base = ResNetBase.from_config(model.config).eval()
        base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")})
        torch.testing.assert_close(base(x), pooled)  # the labml reference's ResNetBase: pooled [B, C]
        assert base(x).shape == (2, model.num_features)


def _saved_bytes(model, x):
    """Bytes of the tensors autograd keeps for the backward pass (the activation memory)."""
    seen: dict[int, int] = {}

    def pack(t):
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return out, sum(seen.values())


@pytest.mark.parametrize("name", ["resnet50", "cifar_resnet20"])
def test_grad_checkpointing_same_results_less_memory(name):
    plain = create(name)
    perturb_bn(plain)
    checked = create(name)
    checked.load_state_dict(plain.state_dict())
    checked.set_grad_checkpointing()
    assert checked.grad_checkpointing
    x = _x(name, batch=4)
    out_a, bytes_a = _saved_bytes(plain, x)
    out_b, bytes_b = _saved_bytes(checked, x)
    assert torch.equal(out_a, out_b)
    out_a.square().mean().backward()
    out_b.square().mean().backward()
    for (n, a), b in zip(plain.named_parameters(), checked.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, msg=n)
    # The recomputation in backward does not count batch-norm statistics twice.
    for (n, a), b in zip(plain.named_buffers(), checked.buffers()):
        assert torch.equal(a, b), n
    assert bytes_b < 0.35 * bytes_a, (bytes_a, bytes_b)
    # The per-stage maps take the same path.
    maps_b = checked.forward_intermediates(x, intermediates_only=True)
    torch.testing.assert_close(maps_b[-1], checked.forward_features(x))
    checked.set_grad_checkpointing(False)
    assert not checked.grad_checkpointing


@pytest.mark.slow
@pytest.mark.parametrize("name", KINDS)
def test_torch_jit_script(name, tmp_path):
    model = create(name).eval()
    perturb_bn(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, and still used
        scripted = torch.jit.script(model)
        scripted.save(str(tmp_path / "m.pt"))
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
        base = torch.jit.script(ResNetBase.from_config(model.config).eval())
    x = _x(name)
    with torch.no_grad():
        want = model(x)
        assert rel_err(scripted(x), want) <= 1e-6
        assert rel_err(loaded(x), want) <= 1e-6
        assert rel_err(scripted.forward_features(x), model.forward_features(x)) <= 1e-6
    assert base(x).shape == (2, model.num_features)


@pytest.mark.slow
def test_no_export_path_prints_a_tracer_warning(tmp_path):
    from resnet_zoo.inference.export import export_model

    model = create("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model, tmp_path / "m.pt", format="torchscript", input_size=64)
        with torch.no_grad():
            torch.jit.trace(model, x)
        if pytest.importorskip("onnx") and hasattr(torch.onnx, "export"):
            try:
                torch.onnx.export(model, (x,), io.BytesIO(), dynamo=False)  # the legacy exporter
            except (TypeError, RuntimeError) as e:  # a torch without the legacy exporter
                if "dynamo" not in str(e):
                    raise
        torch.export.export(model, (x,))
    assert [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)] == []


@pytest.mark.parametrize("name", ["resnet18", "cifar_resnet20"])
def test_features_only_matches_timm_and_scripts(name):
    """timm's feature maps (map 0 is the stem's activation), module names and out_indices; the
    extractor scripts with TorchScript, as timm's does."""
    ours = create(name, features_only=True, out_indices=(0, 1, 3)).eval()
    assert ours.feature_info.module_name() == ["act1", "layer1", "layer3"]
    assert ours.out_indices == [0, 1, 3]
    if name == "resnet18":
        theirs = timm.create_model("resnet18", features_only=True, out_indices=(0, 1, 3))
        assert theirs.feature_info.module_name() == ours.feature_info.module_name()
        assert theirs.feature_info.reduction() == ours.feature_info.reduction() == [2, 4, 16]
        assert theirs.feature_info.channels() == ours.feature_info.channels()
        # timm's FeatureInfo takes our entries
        info = timm.models.FeatureInfo([dict(fi) for fi in create(name).feature_info], (0, 1, 3))
        assert info.module_name() == ours.feature_info.module_name()
    x = _x(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(ours)
    with torch.no_grad():
        for a, b in zip(scripted(x), ours(x), strict=True):
            assert torch.equal(a, b)


def _timm_twin(name: str = "resnet18", **kwargs):
    """timm's model of ``name`` and ours with the same weights, both in eval mode."""
    theirs = timm.create_model(name, **kwargs).eval()
    ours = create(name, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"indices": 2}, {"indices": [0, -2]}, {"indices": [1, 3], "stop_early": True}, {"intermediates_only": True}],
)
def test_forward_intermediates_is_timms(kwargs):
    theirs, ours = _timm_twin()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = theirs.forward_intermediates(x, **kwargs), ours.forward_intermediates(x, **kwargs)
    if kwargs.get("intermediates_only"):
        a, b = (None, a), (None, b)
    else:
        assert torch.equal(a[0], b[0])  # the final map (the last one taken with stop_early)
    assert len(a[1]) == len(b[1]) and all(torch.equal(u, v) for u, v in zip(a[1], b[1]))
    with pytest.raises(resnet_zoo.ConfigError, match="output_fmt must be 'NCHW'"):
        ours.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("indices, prune_head", [((1, 2), True), (4, False), ([0], True)])
def test_prune_intermediate_layers_is_timms(indices, prune_head):
    theirs, ours = _timm_twin()
    assert ours.prune_intermediate_layers(indices, prune_head=prune_head) == theirs.prune_intermediate_layers(
        indices, prune_head=prune_head
    )
    assert (ours.num_features, ours.head_hidden_size) == (theirs.num_features, theirs.head_hidden_size)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        a = theirs.forward_intermediates(x, indices=indices, intermediates_only=True)
        b = ours.forward_intermediates(x, indices=indices, intermediates_only=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", "catavgmax"])
def test_reset_classifier_takes_timms_pools(pool):
    theirs, ours = _timm_twin()
    theirs.reset_classifier(7, pool)
    ours.reset_classifier(7, pool)
    assert ours.head_hidden_size == theirs.head_hidden_size and not ours.fc.training  # follows eval mode
    ours.fc.load_state_dict(theirs.fc.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
        torch.testing.assert_close(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            theirs.forward_head(theirs.forward_features(x), pre_logits=True),
        )
    ours.reset_classifier(0, "")
    theirs.reset_classifier(0, "")
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)) and ours(x).ndim == 4  # the unpooled map
    with pytest.raises(resnet_zoo.ConfigError, match="global_pool must be one of"):
        ours.reset_classifier(3, "median")
    with pytest.raises(resnet_zoo.ConfigError, match="no pooling"):
        ours.reset_classifier(3, "")


def test_timms_everyday_keywords_build_timms_model():
    kwargs = dict(in_chans=1, drop_rate=0.25, drop_path_rate=0.1, global_pool="avgmax", num_classes=4)
    theirs, ours = _timm_twin("resnet50", **kwargs)
    assert ours.in_chans == 1 and ours.drop_rate == theirs.drop_rate == 0.25
    rates = [b.drop_path for stage in ours.stages() for b in stage]
    timm_rates = [
        b.drop_path.drop_prob if b.drop_path is not None else 0.0
        for s in (theirs.layer1, theirs.layer2, theirs.layer3, theirs.layer4)
        for b in s
    ]
    assert rates == pytest.approx(timm_rates) and rates[-1] == pytest.approx(0.1)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))
    # stochastic depth drops whole residual branches in training (timm's weights start each
    # branch's last norm at zero, so the norms are given weights first)
    perturb_bn(ours)
    ours.train()
    x = torch.randn(16, 1, 64, 64)
    torch.manual_seed(0)
    a = ours.forward_features(x)
    torch.manual_seed(1)
    assert not torch.equal(a, ours.forward_features(x))
    torch.manual_seed(0)
    assert torch.equal(a, ours.forward_features(x))


def test_timms_keyword_contract():
    with pytest.raises(TypeError, match="'bogus' is not a ResNetConfig field"):
        create("resnet18", bogus=1)
    assert issubclass(resnet_zoo.UnknownOptionError, resnet_zoo.ResNetZooError)
    model = create("resnet18", pretrained_cfg=None, pretrained_cfg_overlay=None, device="cpu", dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float64
    feats = create("resnet18", features_only=True, feature_cls="getter").eval()
    assert isinstance(feats(torch.randn(1, 3, 64, 64)), list)
    with pytest.raises(resnet_zoo.ConfigError, match="feature_cls must be one of"):
        create("resnet18", features_only=True, feature_cls="dict")
    with pytest.raises(resnet_zoo.ConfigError, match="pretrained_cfg_overlay keys"):
        create("resnet18", pretrained_cfg_overlay={"num_classes": 3})


def test_a_tag_without_weights_carries_its_preprocessing_as_timm():
    ours = create("resnet50.a1_in1k")
    theirs = timm.create_model("resnet50.a1_in1k", pretrained=False)
    assert resolve_data_config({}, model=ours) == resolve_data_config({}, model=theirs)
    assert (ours.pretrained_cfg["crop_pct"], ours.pretrained_cfg["interpolation"]) == (0.95, "bicubic")
    assert ours.pretrained_cfg["label_names"] is None  # random weights: no class names claimed


def test_pretrained_cfg_overlay_file_and_preprocessing(tmp_path):
    from safetensors.torch import save_file

    source = create("cifar_resnet20", pretrained=True).eval()
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = create(
        "cifar_resnet20", pretrained=True, pretrained_cfg_overlay=dict(file=tmp_path / "w.safetensors", crop_pct=0.9)
    ).eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))
    assert model.pretrained_cfg["crop_pct"] == 0.9


@pytest.mark.parametrize("name", ["resnet18", "cifar_resnet20"])
def test_an_fx_traced_model_scripts(name):
    model = create(name, global_pool="avgmax").eval()
    graph = torch.fx.symbolic_trace(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(graph)
    x = _x(name)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
