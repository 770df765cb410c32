"""optimize_for_inference, extract_features and predict."""

import logging
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_fast_bf16, perturb_bn, rel_err
from images import sample_photos

import resnet_zoo
from resnet_zoo import ConfigError, InputError, create
from resnet_zoo.inference import extract_features, optimize_for_inference, predict
from resnet_zoo.inference.images import Preprocess
from resnet_zoo.registry import get_entry

_PHOTOS: dict[int, torch.Tensor] = {}


def _input(name, batch=None):
    """Real photos, preprocessed at the model's small test size (32 for CIFAR nets, else 64)."""
    from resnet_zoo.manifest import Preprocessing

    size = 32 if get_entry(name).input_size <= 32 else 64
    if size not in _PHOTOS:
        prep = Preprocess(Preprocessing(size, 1.0))
        _PHOTOS[size] = torch.stack([prep(p) for p in sorted(sample_photos().values())])
    return _PHOTOS[size] if batch is None else _PHOTOS[size][:batch]


@pytest.mark.slow
@pytest.mark.parametrize("name", resnet_zoo.list_models())
def test_fast_path_fp32_parity_for_every_model(name):
    x = _input(name)
    # Non-trivial running statistics and affine parameters, so that folding has work to do.
    model = create(name)
    perturb_bn(model, torch.Generator().manual_seed(0))
    if name == "cifar_resnet1202":  # 200 blocks of random residuals overflow in eval mode
        for stage in model.stages():
            for block in stage:
                block.zero_init_last()
    model.eval()
    with torch.no_grad():
        ref = model(x)
    out = optimize_for_inference(model)(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert rel_err(out, ref) <= 1e-4
    # The original model is untouched (still has its batch norms, still eval).
    assert isinstance(model.bn1, torch.nn.BatchNorm2d) and not model.training


@pytest.mark.slow
@needs_fast_bf16
@pytest.mark.parametrize("name", resnet_zoo.list_models())
def test_fast_path_bf16_cosine_for_every_model(name):
    # The weights as created (He init, unit running variance) on real photos. Random weights
    # with running statistics fitted to the data are not a fair probe: their features collapse
    # towards the mean image, so any rounding looks large relative to what is left.
    x = _input(name)
    model = create(name, zero_init_residual=name == "cifar_resnet1202").eval()
    with torch.no_grad():
        ref = model(x)
    out = optimize_for_inference(model, dtype=torch.bfloat16)(x)
    assert out.dtype == torch.float32
    assert F.cosine_similarity(out, ref, dim=1).min().item() >= 0.999


def test_fast_path_folds_batch_norm_and_is_channels_last():
    model = create("resnet18").eval()
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert fast.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.model.conv1.bias is not None
    with pytest.raises(ConfigError, match="inference only"):
        fast.train()
    with pytest.raises(ConfigError, match="dtype"):
        optimize_for_inference(model, dtype=torch.float16)
    with pytest.raises(InputError, match="channels"):
        fast(torch.randn(1, 1, 32, 32))


@pytest.mark.slow
def test_fast_path_features_only_and_pooled_features():
    x = _input("resnet50", 2)
    model = create("resnet50")
    perturb_bn(model)
    model.eval()
    feats = create("resnet50", features_only=True, out_indices=(2, 4))
    feats.load_state_dict({k: v for k, v in model.state_dict().items() if k in feats.state_dict()})
    feats.eval()
    fast = optimize_for_inference(feats.eval())
    with torch.no_grad():
        ref = feats(x)
    out = fast(x)
    assert [t.shape for t in out] == [t.shape for t in ref]
    assert all(rel_err(a, b) <= 1e-4 for a, b in zip(out, ref))
    for dtype in resnet_zoo.cpu.supported_dtypes():  # bf16 where this CPU runs it fast
        fast_model = optimize_for_inference(model, dtype=dtype)
        pooled, last_map = fast_model.forward_pooled(x), fast_model.forward_features(x)
        with torch.no_grad():
            assert F.cosine_similarity(pooled, model.forward_pooled(x)).min() >= 0.999
            assert F.cosine_similarity(last_map.flatten(1), model.forward_features(x).flatten(1)).min() >= 0.999


@pytest.fixture
def photo_dir(tmp_path):
    d = tmp_path / "photos"
    (d / "nested").mkdir(parents=True)
    photos = sample_photos()
    for i, (name, path) in enumerate(sorted(photos.items())):
        shutil.copy(path, (d / "nested" if i % 2 else d) / name)
    return d


@pytest.mark.slow
def test_extract_features_in_batches_with_workers_is_ordered_and_exact(photo_dir):
    model = create("resnet18").eval()
    feats, paths = extract_features(model, [photo_dir], batch_size=3, num_workers=2, progress=False)
    assert not model.training  # the caller's mode is kept
    train_model = create("resnet18")
    extract_features(train_model, [photo_dir], progress=False)
    assert train_model.training
    assert paths == sorted(p for p in photo_dir.rglob("*") if p.is_file())
    assert feats.shape == (len(paths), 512)
    prep = Preprocess(model.pretrained_cfg.preprocessing)
    with torch.no_grad():
        expected = model.forward_pooled(torch.stack([prep(p) for p in paths]))
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    fast_feats, _ = extract_features(optimize_for_inference(model), [photo_dir], progress=False)
    assert rel_err(fast_feats, expected) <= 1e-4


def test_bad_images_are_named_or_skipped(photo_dir, caplog):
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    model = create("cifar_resnet20").eval()
    with pytest.raises(InputError, match="broken.jpg"):
        extract_features(model, [photo_dir], progress=False)
    with caplog.at_level(logging.WARNING, logger="resnet_zoo"):
        feats, paths = extract_features(model, [photo_dir], skip_bad=True, progress=False)
    assert "broken.jpg" in caplog.text
    assert all(p.name != "broken.jpg" for p in paths) and feats.shape[0] == len(paths)
    with pytest.raises(InputError, match="does not exist"):
        extract_features(model, [photo_dir / "nope"], progress=False)


def test_predict_labels_and_probabilities(photo_dir):
    model = create("resnet18").eval()
    preds = predict(model, [photo_dir], top=3)
    assert len(preds) == len(list(p for p in photo_dir.rglob("*") if p.is_file()))
    for p in preds:
        assert len(p.topk) == 3
        scores = [s for _, _, s in p.topk]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        assert all(isinstance(label, str) and label for _, label, _ in p.topk)
    assert preds[0].topk[0][1] == resnet_zoo.manifest.read_labels("imagenet_classes.txt")[preds[0].topk[0][0]]
    with pytest.raises(ConfigError, match="top"):
        predict(model, [photo_dir], top=0)
    with pytest.raises(ConfigError, match="no classifier"):
        predict(create("resnet18", num_classes=0), [photo_dir])


def test_every_wrapper_has_a_public_face_and_unwraps_to_the_model():
    """model, backend, dtype and device on each view; unwrap() reaches the resnet_zoo model
    under any number of them; compute_of() answers for the eager model too."""
    from resnet_zoo.inference.model_view import compute_of, unwrap
    from resnet_zoo.inference.predict import PooledFeatures

    eager = resnet_zoo.create("cifar_resnet20").eval()
    fast = resnet_zoo.optimize_for_inference(eager)
    pooled = PooledFeatures(fast)
    assert (fast.backend, fast.dtype, fast.device.type) == ("torch", torch.float32, "cpu")
    assert (pooled.backend, pooled.dtype) == ("torch", torch.float32) and pooled.model is fast
    assert unwrap(pooled) is fast.model and unwrap(eager) is eager
    assert compute_of(eager) == ("eager", torch.float32, torch.device("cpu"))
    assert pooled.config == eager.config and pooled.arch_name == "cifar_resnet20"
    with pytest.raises(resnet_zoo.ConfigError, match="resnet_zoo model"):
        unwrap(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("kw", [{}, {"features_only": True}])
def test_the_fast_path_scripts_with_torchscript(kw, tmp_path):
    """#35 part 3: the result of optimize_for_inference scripts, as timm's models do; the
    scripted module computes what the wrapper computes, and saves and loads."""
    import warnings

    from resnet_zoo import optimize_for_inference

    model = optimize_for_inference(create("resnet18", **kw).eval())
    x = torch.randn(2, 3, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(model)
        scripted.save(str(tmp_path / "m.pt"))
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
    want = model(x)
    for got in (scripted(x), loaded(x)):
        if kw:
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        else:
            assert torch.equal(got, want)
    fast = optimize_for_inference(create("resnet18").eval(), dtype=torch.bfloat16)
    if fast.use_mkldnn:  # the oneDNN path (CPUs with fast bfloat16) is named, not half-scripted
        with pytest.raises(ConfigError, match="oneDNN bfloat16 path does not script"):
            torch.jit.script(fast)
