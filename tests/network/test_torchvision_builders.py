"""torchvision's builder keywords and architectures, checked against torchvision itself."""

import pytest
import torch

from resnet_zoo import ConfigError, ResNet, create, list_models

tv = pytest.importorskip("torchvision.models")
from torchvision.ops import FrozenBatchNorm2d  # noqa: E402


def _same_draws(theirs_builder, ours_builder) -> tuple[dict, dict]:
    torch.manual_seed(3)
    theirs = theirs_builder().state_dict()
    torch.manual_seed(3)
    ours = ours_builder().state_dict()
    return theirs, ours


def _equal(theirs: dict, ours: dict) -> bool:
    return list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_every_torchvision_resnet_is_registered():
    names = [n for n in dir(tv) if n.startswith(("resnet", "resnext", "wide_resnet")) and callable(getattr(tv, n))]
    assert names and set(names) <= set(list_models())
    assert "resnext101_64x4d" in names


@pytest.mark.slow
def test_resnext101_64x4d_is_torchvisions_draw_for_draw():
    assert _equal(*_same_draws(tv.resnext101_64x4d, lambda: create("resnext101_64x4d")))


def test_groups_and_width_per_group_as_torchvisions_builder():
    theirs, ours = _same_draws(
        lambda: tv.resnet50(groups=32, width_per_group=4), lambda: create("resnet50", groups=32, width_per_group=4)
    )
    assert _equal(theirs, ours)
    assert create("resnet50", groups=32, width_per_group=4).config == create("resnext50_32x4d").config
    with pytest.raises(ConfigError, match="width_per_group applies to bottleneck blocks; resnet18"):
        create("resnet18", width_per_group=4)
    with pytest.raises(ConfigError, match="width_per_group"):
        create("resnet50", width_per_group=0)


def test_replace_stride_with_dilation_as_torchvision_and_deeplabv3():
    from torchvision.models.segmentation import deeplabv3_resnet50
    from torchvision.models.segmentation.deeplabv3 import _deeplabv3_resnet

    dilate = [False, True, True]
    theirs, ours = _same_draws(
        lambda: tv.resnet50(replace_stride_with_dilation=dilate),
        lambda: create("resnet50", replace_stride_with_dilation=dilate),
    )
    assert _equal(theirs, ours)
    model = create("resnet50", replace_stride_with_dilation=dilate).eval()
    assert model.feature_info.reduction() == [2, 4, 8, 8, 8] and model.full_feature_reduction == 8
    reference = tv.resnet50(replace_stride_with_dilation=dilate).eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape[-1] == 8
        torch.testing.assert_close(model(x), reference(x))
    # torchvision's DeepLabV3 on a resnet_zoo backbone is torchvision's DeepLabV3, draw for draw
    a, b = _same_draws(
        lambda: deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=5, aux_loss=True),
        lambda: _deeplabv3_resnet(create("resnet50", replace_stride_with_dilation=dilate), 5, True),
    )
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="replace_stride_with_dilation must be 3 True/False values"):
        create("resnet50", replace_stride_with_dilation=[True, True])
    basic = create("resnet18", replace_stride_with_dilation=[False, False, True]).eval()
    assert basic.forward_features(x).shape[-1] == 4  # timm's dilated BasicBlock


def test_norm_layer_frozen_batch_norm_takes_a_detection_backbone():
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    frozen = create("resnet50", num_classes=0, norm_layer=FrozenBatchNorm2d)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert isinstance(frozen.layer1[0].downsample[1], FrozenBatchNorm2d)
    body = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone.body.state_dict()
    frozen.load_state_dict(body, strict=True)
    with pytest.raises(ConfigError, match="norm_layer must make a norm layer"):
        ResNet([1], [8], norm_layer="batchnorm")


def test_a_file_loads_into_a_frozen_batch_norm_model(tmp_path):
    from safetensors.torch import save_file

    model = create("cifar_resnet20", pretrained=True).eval()
    frozen = create("cifar_resnet20", pretrained=True, norm_layer=FrozenBatchNorm2d).eval()
    path = tmp_path / "r20.safetensors"
    save_file(model.state_dict(), str(path))
    from_file = create("cifar_resnet20", pretrained=path, norm_layer=FrozenBatchNorm2d).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), model(x))
        torch.testing.assert_close(from_file(x), model(x))
