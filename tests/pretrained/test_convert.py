"""convert_state_dict: every major layout, with numerical parity against the real network."""

import pytest
import torch
import torch.nn.functional as F
from conftest import labml_name, perturb_bn, reference_model1, rel_err
from torch import nn

import resnet_zoo
from resnet_zoo import CheckpointError, convert_state_dict, create, detect_layout

TOL = 1e-5
TORCHVISION_ARCHS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
]


def _parity(reference: nn.Module, ours: nn.Module, x: torch.Tensor) -> float:
    reference.eval()
    ours.eval()
    with torch.no_grad():
        return rel_err(ours(x), reference(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION_ARCHS)
def test_torchvision_parity(name):
    tvm = pytest.importorskip("torchvision.models")
    reference = getattr(tvm, name)()
    perturb_bn(reference)
    sd = reference.state_dict()
    assert detect_layout(sd) == "torchvision"
    ours = create(name)
    ours.load_state_dict(convert_state_dict(sd, source="torchvision"), strict=True)
    assert _parity(reference, ours, torch.randn(2, 3, 64, 64)) <= TOL


def test_torchvision_parity_at_224_through_a_safetensors_file(tmp_path):
    tvm = pytest.importorskip("torchvision.models")
    from safetensors.torch import save_file

    reference = tvm.resnet50()
    perturb_bn(reference)
    save_file(reference.state_dict(), tmp_path / "r50.safetensors")
    ours = create("resnet50", pretrained=tmp_path / "r50.safetensors")
    assert _parity(reference, ours, torch.randn(1, 3, 224, 224)) <= TOL


def test_timm_parity():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("resnet50", pretrained=False)
    perturb_bn(reference)
    ours = create("resnet50")
    ours.load_state_dict(convert_state_dict(reference.state_dict(), source="timm"), strict=True)
    assert _parity(reference, ours, torch.randn(2, 3, 64, 64)) <= TOL
    # timm's feature maps are ours too (its stem feature is before the max-pool; skip it).
    reference.eval(), ours.eval()
    with torch.no_grad():
        theirs = reference.forward_intermediates(torch.ones(1, 3, 64, 64), intermediates_only=True)
        mine = ours.forward_intermediates(torch.ones(1, 3, 64, 64), intermediates_only=True)
    for a, b in zip(mine[1:], theirs[1:]):
        assert rel_err(a, b) <= TOL


@pytest.mark.slow
def test_transformers_parity():
    transformers = pytest.importorskip("transformers")
    config = transformers.ResNetConfig(  # microsoft/resnet-50's architecture
        depths=[3, 4, 6, 3],
        hidden_sizes=[256, 512, 1024, 2048],
        embedding_size=64,
        layer_type="bottleneck",
        num_labels=1000,
        downsample_in_first_stage=False,
    )
    reference = transformers.ResNetForImageClassification(config)
    perturb_bn(reference)
    sd = reference.state_dict()
    assert detect_layout(sd) == "transformers"
    ours = create("resnet50")
    ours.load_state_dict(convert_state_dict(sd), strict=True)
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rel_err(ours(x), reference(pixel_values=x).logits) <= TOL
    # The backbone alone (ResNetModel, no "resnet." prefix, no classifier) also converts.
    body = {k[len("resnet.") :]: v for k, v in sd.items() if k.startswith("resnet.")}
    headless = create("resnet50", num_classes=0)
    headless.load_state_dict(convert_state_dict(body, source="transformers"), strict=True)


def test_labml_reference_parity():
    labml_resnet = pytest.importorskip("labml_nn.resnet")
    reference = labml_resnet.ResNetBase([2, 2, 2], [16, 32, 64], [8, 16, 32], img_channels=3)
    perturb_bn(reference)
    assert detect_layout(reference.state_dict()) == "labml"
    ours = resnet_zoo.ResNetBase([2, 2, 2], [16, 32, 64], [8, 16, 32], stage_strides=(2, 1, 1))
    ours.load_state_dict(convert_state_dict(reference.state_dict(), source="labml"), strict=True)
    assert _parity(reference, ours, torch.randn(2, 3, 40, 40)) <= TOL


class _OptionAShortcut(nn.Module):
    def __init__(self, planes):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _CifarBlock(nn.Module):
    """The widely used CIFAR ResNet block (option A or B shortcut), written independently."""

    def __init__(self, cin, cout, stride, option):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            if option == "A":
                self.shortcut = _OptionAShortcut(cout)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _CifarResNet(nn.Module):
    def __init__(self, n_blocks, widths, option, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, (n, w) in enumerate(zip(n_blocks, widths)):
            blocks = []
            for j in range(n):
                blocks.append(_CifarBlock(cin, w, (1 if i == 0 else 2) if j == 0 else 1, option))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(n_blocks)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.linear(x.mean(dim=(2, 3)))


def test_cifar_option_a_checkpoint_with_module_prefix():
    reference = _CifarResNet([3, 3, 3], [16, 32, 64], "A")
    perturb_bn(reference)
    sd = nn.DataParallel(reference).state_dict()
    assert all(k.startswith("module.") for k in sd)
    assert detect_layout(sd) == "cifar"
    ours = create("cifar_resnet20")
    ours.load_state_dict(convert_state_dict(sd), strict=True)
    assert _parity(reference, ours, torch.randn(4, 3, 32, 32)) <= TOL


def test_cifar_option_b_checkpoint_into_a_cifar_style_resnet18():
    reference = _CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], "B")
    perturb_bn(reference)
    ours = create("resnet18", num_classes=10, first_kernel_size=3, stem_stride=1, stem_pool=False)
    ours.load_state_dict(convert_state_dict(reference.state_dict(), source="cifar"), strict=True)
    assert _parity(reference, ours, torch.randn(2, 3, 32, 32)) <= TOL


def test_seed_model1_checkpoint_into_cifar_resnet14():
    reference = reference_model1()

    def forward(self, x):  # the printed model's forward: relu(bn(conv)), layers, pool, fc
        x = self.relu(self.bn(self.conv(x)))
        for layer in (self.layer1, self.layer2, self.layer3):
            for b in layer:
                identity = b.downsample(x) if hasattr(b, "downsample") else x
                y = b.relu(b.bn1(b.conv1(x)))
                x = b.relu(b.bn2(b.conv2(y)) + identity)
        return self.fc(self.avg_pool(x).flatten(1))

    reference.forward = forward.__get__(reference)
    perturb_bn(reference)
    ours = create("cifar_resnet14")
    ours.load_state_dict(convert_state_dict(reference.state_dict()), strict=True)
    assert _parity(reference, ours, torch.randn(2, 3, 32, 32)) <= TOL


def test_a_key_no_rule_covers_is_named():
    tvm = pytest.importorskip("torchvision.models")
    sd = tvm.resnet18().state_dict()
    sd["layer1.0.se.fc1.weight"] = torch.zeros(4, 64)
    with pytest.raises(CheckpointError, match=r"layer1\.0\.se\.fc1\.weight"):
        convert_state_dict(sd, source="torchvision")


def test_bad_arguments():
    with pytest.raises(CheckpointError, match="unknown source layout 'keras'"):
        convert_state_dict({"conv.weight": torch.zeros(1)}, source="keras")
    with pytest.raises(CheckpointError, match="cannot tell the layout"):
        convert_state_dict({"encoder.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="empty"):
        convert_state_dict({})
    with pytest.raises(CheckpointError, match="torch.Tensor"):
        convert_state_dict({"conv.weight": [1, 2]})


def test_converted_dict_keeps_the_same_tensors():
    tvm = pytest.importorskip("torchvision.models")
    sd = tvm.resnet18().state_dict()
    out = convert_state_dict(sd)
    assert list(out) == list(sd)  # torchvision's names are resnet_zoo's
    assert all(out[k] is sd[k] for k in sd)
    labml = {labml_name(k, [2, 2, 2, 2]): v for k, v in sd.items()}
    back = convert_state_dict(labml)
    assert sorted(back) == sorted(sd) and all(back[k] is sd[k] for k in sd)
    assert back["layer2.0.downsample.0.weight"] is labml["blocks.2.shortcut.conv.weight"]


def test_files_in_the_older_flat_layout_keep_loading(tmp_path, hub):
    """Directories and Hub repos saved before resnet_zoo took torchvision's names (one flat
    ``blocks.N`` sequence, ``conv``/``bn`` stem, ``shortcut.conv``/``.bn``) load unchanged."""
    from safetensors.torch import load_file, save_file

    model = create("cifar_resnet20", pretrained=True).eval()
    old = tmp_path / "old"
    model.save_pretrained(old)
    sd = load_file(str(old / "model.safetensors"))
    flat = {labml_name(k, [3, 3, 3]): v for k, v in sd.items()}
    assert "blocks.8.conv2.weight" in flat and "conv.weight" in flat and not any(k.startswith("layer") for k in flat)
    save_file(flat, str(old / "model.safetensors"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for loaded in (resnet_zoo.ResNet.from_pretrained(old), create("cifar_resnet20", pretrained=old)):
            assert torch.equal(loaded.eval()(x), expected)
        repo = "someone/old-resnet20"
        for name in ("config.json", "model.safetensors"):
            hub.add_file(repo, name, (old / name).read_bytes())
        assert torch.equal(resnet_zoo.ResNet.from_pretrained(repo).eval()(x), expected)
    # A deeper file whose stages all have the same width: the config says where they start.
    same_width = resnet_zoo.ResNet([2, 1], [8, 8], first_kernel_size=3, num_classes=2).eval()
    flat = {labml_name(k, [2, 1]): v for k, v in same_width.state_dict().items()}
    assert "blocks.2.conv1.weight" in flat
    converted = convert_state_dict(flat, n_blocks=[2, 1])
    assert sorted(converted) == sorted(same_width.state_dict())


def test_every_shipped_file_is_in_torchvisions_names_and_pinned():
    import hashlib
    import json

    from safetensors import safe_open

    from resnet_zoo.manifest import data_path

    shipped = {k: v for k, v in json.loads(data_path("manifest.json").read_text())["weights"].items() if v.get("path")}
    assert len(shipped) >= 6
    for name, entry in shipped.items():
        path = data_path(entry["path"]) / "model.safetensors"
        with safe_open(str(path), "pt") as f:
            keys = sorted(f.keys())
        model = create(name.split(".")[0], pretrained=name.split(".")[1])
        assert keys == sorted(model.state_dict()) and "conv1.weight" in keys, name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
