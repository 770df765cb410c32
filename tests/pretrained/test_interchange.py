"""Interchange with torchvision, timm and the Hugging Face Hub: key layouts both ways, timm's
folder format, huggingface_hub's download arguments, honest heads and model cards."""

import pytest
import torch
from conftest import perturb_bn, rel_err

import resnet_zoo
from resnet_zoo import ConfigError, DownloadError, ResNet, create, export_state_dict
from resnet_zoo.pretrained.convert import TIMM_ARCHS, TORCHVISION_ARCHS

SHIPPED = "cifar_resnet20.cifar10"  # weights in weights/, with class names and a reported top-1


def _x(batch: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(batch, 3, size, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_ARCHS)
def test_export_state_dict_loads_strictly_into_timm_and_torchvision(name):
    timm = pytest.importorskip("timm")
    model = create(name).eval()
    perturb_bn(model)
    x = _x(1)
    with torch.no_grad():
        want = model(x)
        theirs = timm.create_model(name, pretrained=False).eval()
        theirs.load_state_dict(export_state_dict(model, layout="timm"), strict=True)
        assert rel_err(theirs(x), want) <= 1e-6
        if name in TORCHVISION_ARCHS:
            tvm = pytest.importorskip("torchvision.models")
            tv = getattr(tvm, name)().eval()
            tv.load_state_dict(export_state_dict(model, layout="torchvision"), strict=True)
            assert rel_err(tv(x), want) <= 1e-6
    # And back: convert_state_dict reads the exported keys into the same model.
    back = resnet_zoo.convert_state_dict(export_state_dict(model, "torchvision"))
    assert back.keys() == model.state_dict().keys()


@pytest.mark.parametrize("name", [n for n in resnet_zoo.list_models() if n not in TIMM_ARCHS])
def test_export_state_dict_refuses_what_the_layout_cannot_express(name):
    with pytest.raises(ConfigError, match="has no torchvision layout"):
        export_state_dict(create(name), layout="torchvision")
    with pytest.raises(ConfigError, match="layout must be one of"):
        export_state_dict(create("resnet18"), layout="keras")


def test_save_pretrained_in_timms_layout_loads_with_timm_local_dir(tmp_path):
    timm = pytest.importorskip("timm")
    model = create("resnet50", num_classes=7).eval()
    perturb_bn(model)
    model.save_pretrained(tmp_path / "t", layout="timm")
    theirs = timm.create_model(f"local-dir:{tmp_path / 't'}", pretrained=True).eval()
    x = _x()
    with torch.no_grad():
        assert rel_err(theirs(x), model(x)) <= 1e-6
    assert theirs.pretrained_cfg["num_classes"] == 7
    assert tuple(theirs.pretrained_cfg["mean"]) == model.pretrained_cfg["mean"]
    # resnet_zoo reads the timm folder too: the keys decide the layout.
    ours = create("resnet50", pretrained=str(tmp_path / "t" / "model.safetensors")).eval()
    with torch.no_grad():
        assert rel_err(ours(x), model(x)) <= 1e-6
    card = (tmp_path / "t" / "README.md").read_text()
    assert "library_name: timm" in card and 'timm.create_model("hf-hub:' in card
    with pytest.raises(ConfigError, match="layout='timm' needs one of timm's ResNets"):
        create("cifar_resnet20").save_pretrained(tmp_path / "c", layout="timm")
    assert not (tmp_path / "c").exists()


def test_a_new_head_drops_the_old_labels_and_accuracy_and_the_card_says_fine_tuned(tmp_path):
    from huggingface_hub import ModelCard

    model = create(SHIPPED, pretrained=True)
    assert model.pretrained_cfg.labels[0] == "airplane" and model.pretrained_cfg.top1 == 91.73
    model.reset_classifier(5)
    cfg = model.pretrained_cfg
    assert cfg.labels is None and cfg["label_names"] is None and cfg["top1"] is None
    assert cfg["num_classes"] == 5 and cfg.base_model == SHIPPED
    assert cfg.preprocessing.input_size == 32  # the body's preprocessing still applies
    preds = resnet_zoo.predict(model, [_photo()], top=3)
    assert [label for _, label, _ in preds[0].topk] == [str(c) for c, _, _ in preds[0].topk]

    created = create(SHIPPED, pretrained=True, num_classes=5)
    assert created.pretrained_cfg.labels is None and created.pretrained_cfg.top1 is None
    created.save_pretrained(tmp_path / "ft")
    text = (tmp_path / "ft" / "README.md").read_text()
    assert "91.730" not in text and "reported top-1" not in text
    assert f"Fine-tuned from `{SHIPPED}`" in text
    card = ModelCard.load(tmp_path / "ft" / "README.md")
    # A shipped tag is not a Hub id: the card's base_model is left out (the Hub refuses a card
    # that names a model it does not have); the text and config.json keep the tag.
    assert card.data.base_model is None and card.data.library_name == "resnet_zoo"
    reloaded = ResNet.from_pretrained(tmp_path / "ft")
    assert reloaded.pretrained_cfg.base_model == SHIPPED and reloaded.pretrained_cfg.labels is None

    same = create(SHIPPED, pretrained=True, num_classes=10)  # the same head: it stays
    assert same.pretrained_cfg.labels[0] == "airplane" and same.pretrained_cfg.top1 == 91.73
    same.save_pretrained(tmp_path / "same")
    assert ModelCard.load(tmp_path / "same" / "README.md").data.base_model is None


def test_hub_base_model_is_the_repo_id(hub, tmp_path):
    model = create("resnet18")
    model.save_pretrained(tmp_path / "s")
    for f in ("config.json", "model.safetensors"):
        hub.add_file("someone/r18", f, (tmp_path / "s" / f).read_bytes())
    loaded = ResNet.from_pretrained("someone/r18", num_classes=3)
    assert loaded.pretrained_cfg.base_model == "someone/r18"
    assert loaded.pretrained_cfg["hf_hub_id"] == "someone/r18"
    from huggingface_hub import ModelCard

    loaded.save_pretrained(tmp_path / "ft")  # #35 part 5: the card names the Hub id it came from
    assert ModelCard.load(tmp_path / "ft" / "README.md").data.base_model == "someone/r18"
    again = ResNet.from_pretrained(tmp_path / "ft")  # fine-tuned again: still the Hub id
    again.reset_classifier(2)
    again.save_pretrained(tmp_path / "ft2")
    assert ModelCard.load(tmp_path / "ft2" / "README.md").data.base_model == "someone/r18"


def _photo():
    from images import sample_photos

    return sorted(sample_photos().values())[0]


def test_from_pretrained_passes_huggingface_hubs_download_arguments(hub, tmp_path):
    model = create("cifar_resnet20")
    model.save_pretrained(tmp_path / "s")
    for f in ("config.json", "model.safetensors"):
        hub.add_file("someone/r20", f, (tmp_path / "s" / f).read_bytes())
    first = ResNet.from_pretrained("someone/r20", token="hf_secret_token")
    assert "Bearer hf_secret_token" in hub.authorizations
    gets = hub.gets("model.safetensors")
    ResNet.from_pretrained("someone/r20")
    assert hub.gets("model.safetensors") == gets  # cached
    ResNet.from_pretrained("someone/r20", force_download=True)
    assert hub.gets("model.safetensors") == gets + 1
    hub.stop()
    offline = ResNet.from_pretrained("someone/r20", local_files_only=True, revision="main")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(offline.eval()(x), first.eval()(x))
    with pytest.raises(DownloadError, match="local_files_only=True and someone/other"):
        ResNet.from_pretrained("someone/other", local_files_only=True)
    with pytest.raises(ConfigError, match="not a ResNetConfig field|unknown"):
        ResNet.from_pretrained("someone/r20", local_files_only=True, not_an_argument=1)


def test_timms_and_transformers_directories_load_by_name_and_alone(tmp_path):
    """#36 case 21 / #35 part 4: a timm save_for_hf folder, resnet_zoo's layout="timm" folder and
    a transformers save_pretrained folder load through create(arch, pretrained=DIR) and
    ResNet.from_pretrained(DIR) (which finds the architecture); class names travel."""
    timm = pytest.importorskip("timm")
    from timm.models import save_for_hf

    theirs = timm.create_model("resnet18", num_classes=3).eval()
    perturb_bn(theirs)
    theirs.pretrained_cfg = {**theirs.pretrained_cfg, "label_names": ["cat", "dog", "owl"]}
    save_for_hf(theirs, tmp_path / "timm", safe_serialization=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = theirs(x)
        for model in (create("resnet18", pretrained=tmp_path / "timm"), ResNet.from_pretrained(tmp_path / "timm")):
            assert rel_err(model.eval()(x), want) <= 1e-6 and model.arch_name == "resnet18"
    ours = create("resnet18", num_classes=3)
    ours.save_pretrained(tmp_path / "ours_timm", layout="timm")
    assert ResNet.from_pretrained(tmp_path / "ours_timm").num_classes == 3

    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64, layer_type="basic",
        num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1},
    )  # fmt: skip
    hf = transformers.ResNetForImageClassification(config).eval()
    perturb_bn(hf)
    hf.save_pretrained(tmp_path / "hf")
    with torch.no_grad():
        for model in (create("resnet18", pretrained=tmp_path / "hf"), ResNet.from_pretrained(tmp_path / "hf")):
            assert rel_err(model.eval()(x), hf(pixel_values=x).logits) <= 1e-5
            assert model.pretrained_cfg.labels == ("no", "yes") and model.arch_name == "resnet18"


@pytest.mark.parametrize(
    "field, value", [("downsample_in_bottleneck", True), ("downsample_in_first_stage", True), ("hidden_act", "gelu")]
)
def test_a_transformers_resnet_built_otherwise_is_refused_not_loaded_wrong(tmp_path, field, value):
    """Keys and shapes match, so these loaded silently with wrong logits: now refused, naming the field."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[256, 512, 1024, 2048], embedding_size=64, layer_type="bottleneck",
        num_labels=2, **{field: value},
    )  # fmt: skip
    transformers.ResNetForImageClassification(config).save_pretrained(tmp_path / "hf")
    with pytest.raises(resnet_zoo.CheckpointError, match=f"{field}={value!r}"):
        create("resnet50", pretrained=tmp_path / "hf")


def test_out_to_transformers_automodel_and_pipeline_load_it_with_its_labels(tmp_path):
    """#35 part 4: save_pretrained(layout="transformers") is what AutoModelForImageClassification
    and pipeline("image-classification") load, id2label from the model's class names; and it
    comes back."""
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    from resnet_zoo.inference.predict import predict
    from resnet_zoo.manifest import PretrainedInfo

    model = create("resnet18", num_classes=3).eval()
    perturb_bn(model)
    model.pretrained_info = PretrainedInfo(labels=("cat", "dog", "owl"))
    model.save_pretrained(tmp_path / "hf", layout="transformers")
    theirs = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.id2label == {0: "cat", 1: "dog", 2: "owl"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(theirs(pixel_values=x).logits, model(x)) <= 1e-5
        back = ResNet.from_pretrained(tmp_path / "hf").eval()
        assert torch.equal(back(x), model(x)) and back.pretrained_cfg.labels == ("cat", "dog", "owl")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 240), (200, 120, 40)).save(photo)
    pipe = transformers.pipeline("image-classification", model=str(tmp_path / "hf"))
    top = pipe(Image.open(photo))[0]
    ours = predict(model, [photo], top=1, progress=False)[0].topk[0]
    assert top["label"] == ours[1] and top["score"] == pytest.approx(ours[2], abs=1e-4)
    assert set(export_state_dict(model, "transformers")) == set(theirs.state_dict())
    with pytest.raises(ConfigError, match="no transformers layout.*'zero_pad' shortcuts"):
        export_state_dict(create("cifar_resnet20"), "transformers")


def test_push_to_hub_uploads_a_model_that_loads_back(hub_up, tmp_path):
    """The model's push_to_hub against the local Hub (which takes LFS uploads): config.json,
    model.safetensors and the card arrive, and from_pretrained gives the same outputs."""
    hub = hub_up
    model = create(SHIPPED, pretrained=True).eval()
    model.push_to_hub("me/r20")
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub.repos["me/r20"].files)
    back = ResNet.from_pretrained("me/r20").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
