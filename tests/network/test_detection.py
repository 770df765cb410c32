"""resnet_zoo backbones in torchvision's detection models."""

import pytest
import torch

import resnet_zoo
from resnet_zoo import ConfigError, create, fpn_backbone
from resnet_zoo.detection import TorchvisionStages

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor  # noqa: E402
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402


def _tv_name(name: str) -> str:
    """Inside a block, resnet_zoo's shortcut is torchvision's downsample."""
    return name.replace("shortcut.conv", "downsample.0").replace("shortcut.bn", "downsample.1")


def test_fpn_backbone_is_torchvisions_resnet_fpn_backbone():
    ours = fpn_backbone("resnet18").eval()
    theirs = tv_detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet18", weights=None).eval()
    assert ours.out_channels == theirs.out_channels == 256
    # The same frozen parameters: stem and layer1 frozen, layer2..4 trainable (trainable_layers=3).
    trainable = sorted(_tv_name(n) for n, p in ours.named_parameters() if p.requires_grad)
    assert trainable == sorted(n for n, p in theirs.named_parameters() if p.requires_grad)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in ours.modules()) == sum(
        isinstance(m, FrozenBatchNorm2d) for m in theirs.modules()
    )
    # The same weights give the same maps.
    theirs.load_state_dict({_tv_name(k): v for k, v in ours.state_dict().items()}, strict=True)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert list(a) == list(b) == ["0", "1", "2", "3", "pool"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_the_view_works_with_torchvisions_own_helpers():
    model = create("resnet50")
    stages = TorchvisionStages(model)
    assert stages.inplanes == 2048 and stages.layer1[0] is model.blocks[0]
    backbone = _resnet_fpn_extractor(stages, 2)  # what raised "no attribute 'inplanes'"
    assert backbone.out_channels == 256
    manual = BackboneWithFPN(TorchvisionStages(create("cifar_resnet20")), {"layer1": "0", "layer3": "1"}, [16, 64], 32)
    out = manual(torch.randn(1, 3, 32, 32))
    assert [t.shape[1] for t in out.values()] == [32, 32, 32]


@pytest.mark.parametrize("name", ["resnet18", "cifar_resnet20"])
def test_faster_rcnn_trains_and_detects(name):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = fpn_backbone(name, trainable_layers=2, returned_layers=[2, 3])  # maps "0", "1", "pool"
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    model = tv_detection.FasterRCNN(
        backbone,
        num_classes=3,
        min_size=96,
        max_size=128,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(["0", "1"], 7, 2),
        rpn_pre_nms_top_n_train=50,
        rpn_post_nms_top_n_train=20,
        rpn_pre_nms_top_n_test=50,
        rpn_post_nms_top_n_test=20,
    )
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 100)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 30.0], [50.0, 20.0, 90.0, 70.0]]), "labels": torch.tensor([2, 1])},
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    layer3 = backbone.body.layer3[0].conv1.weight
    assert layer3.grad is not None and backbone.body.conv1.weight.grad is None  # frozen stem
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "labels", "scores"}
    assert detections[0]["boxes"].shape[-1] == 4


def test_fpn_backbone_checks_its_arguments():
    with pytest.raises(ConfigError, match="trainable_layers must be an integer from 0 to 5"):
        fpn_backbone("resnet18", trainable_layers=6)
    with pytest.raises(ConfigError, match="returned_layers must be distinct stages from 1 to 3"):
        fpn_backbone("cifar_resnet20", returned_layers=[4])
    with pytest.raises(ConfigError, match="with a name"):
        fpn_backbone(create("resnet18"), pretrained=True)
    every = fpn_backbone("resnet18", trainable_layers=5, frozen_batch_norm=False)
    assert all(p.requires_grad for p in every.parameters())
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in every.modules())
    assert resnet_zoo.fpn_backbone is fpn_backbone
