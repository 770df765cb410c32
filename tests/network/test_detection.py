"""resnet_zoo backbones in torchvision's detection models."""

import pytest
import torch

import resnet_zoo
from resnet_zoo import ConfigError, create, fpn_backbone

tv_detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor  # noqa: E402
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402


def test_fpn_backbone_is_torchvisions_resnet_fpn_backbone():
    ours = fpn_backbone("resnet18").eval()
    theirs = tv_detection.backbone_utils.resnet_fpn_backbone(backbone_name="resnet18", weights=None).eval()
    assert ours.out_channels == theirs.out_channels == 256
    # The same frozen parameters: stem and layer1 frozen, layer2..4 trainable (trainable_layers=3).
    trainable = sorted(n for n, p in ours.named_parameters() if p.requires_grad)
    assert trainable == sorted(n for n, p in theirs.named_parameters() if p.requires_grad)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in ours.modules()) == sum(
        isinstance(m, FrozenBatchNorm2d) for m in theirs.modules()
    )
    # The same weights give the same maps.
    theirs.load_state_dict(ours.state_dict(), strict=True)  # the same names
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert list(a) == list(b) == ["0", "1", "2", "3", "pool"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_torchvisions_stage_name_tools_work_on_the_model_itself():
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.feature_extraction import create_feature_extractor

    model = create("resnet50").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        last = model.forward_features(x)
        # DeepLabV3 and FCN take their backbone's maps this way
        out = IntermediateLayerGetter(model, {"layer4": "out", "layer2": "aux"})(x)
        assert list(out) == ["aux", "out"] and torch.equal(out["out"], last)
        feats = create_feature_extractor(model, {"layer4": "feat", "act1": "stem"})(x)
        assert torch.equal(feats["feat"], last) and feats["stem"].shape == (1, 64, 32, 32)
    assert model.inplanes == 2048 and model.relu is model.act1
    # torchvision's FPN helper freezes by name and reads inplanes: it used to freeze everything, then fail
    backbone = _resnet_fpn_extractor(model, 3)
    trainable = {n.split(".")[0] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"body", "fpn"}
    assert {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad} == {
        "layer2",
        "layer3",
        "layer4",
    }
    manual = BackboneWithFPN(create("cifar_resnet20"), {"layer1": "0", "layer3": "1"}, [16, 64], 32)
    out = manual(torch.randn(1, 3, 32, 32))
    assert [t.shape[1] for t in out.values()] == [32, 32, 32]


@pytest.mark.slow
def test_a_torchvision_detection_checkpoint_loads_strictly_into_our_detector():
    torch.manual_seed(0)
    theirs = tv_detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    ours = tv_detection.FasterRCNN(fpn_backbone("resnet50"), num_classes=91).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    images = [torch.rand(3, 120, 160)]
    with torch.no_grad():
        a, b = ours.backbone(theirs.transform(images)[0].tensors), theirs.backbone(theirs.transform(images)[0].tensors)
    for k in b:
        torch.testing.assert_close(a[k], b[k])


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
