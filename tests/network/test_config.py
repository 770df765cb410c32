import json

import pytest

import resnet_zoo
from resnet_zoo import ConfigError, ResNetConfig, ResNetZooError


@pytest.mark.parametrize("name", resnet_zoo.list_models())
def test_every_config_round_trips_through_json(name):
    config = resnet_zoo.get_config(name)
    back = ResNetConfig.from_json(json.dumps(json.loads(config.to_json())))
    assert back == config
    assert isinstance(back.n_blocks, tuple) and isinstance(back.n_channels, tuple)


def test_lists_are_normalised_to_tuples():
    c = ResNetConfig(n_blocks=[1, 2], n_channels=[8, 16], bottlenecks=[4, 8], stage_strides=[1, 2])
    assert c.n_blocks == (1, 2) and c.bottlenecks == (4, 8) and c.stage_strides == (1, 2)
    assert hash(c) == hash(ResNetConfig(n_blocks=(1, 2), n_channels=(8, 16), bottlenecks=(4, 8), stage_strides=(1, 2)))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(n_blocks=[1, 1], n_channels=[8]), "n_blocks"),
        (dict(n_blocks=[], n_channels=[]), "n_blocks"),
        (dict(n_blocks=[0], n_channels=[8]), "n_blocks[0]"),
        (dict(n_blocks=[1], n_channels=[8.5]), "n_channels[0]"),
        (dict(n_blocks=[1], n_channels=[8], bottlenecks=[4, 4]), "bottlenecks"),
        (dict(n_blocks=[1], n_channels=[8], stage_strides=[1, 2]), "stage_strides"),
        (dict(n_blocks=[1], n_channels=[8], img_channels=0), "img_channels"),
        (dict(n_blocks=[1], n_channels=[8], first_kernel_size=-3), "first_kernel_size"),
        (dict(n_blocks=[1], n_channels=[8], shortcut="option_c"), "shortcut"),
        (dict(n_blocks=[1], n_channels=[8], num_classes=-1), "num_classes"),
        (dict(n_blocks=[1], n_channels=[8], groups=2), "groups"),
        (dict(n_blocks=[1], n_channels=[8], bottlenecks=[6], groups=4), "bottlenecks[0]"),
        (dict(n_blocks=[1, 1], n_channels=[16, 8], shortcut="zero_pad"), "zero_pad"),
        (dict(n_blocks=[1], n_channels=[8], stem_act="yes"), "stem_act"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as info:
        ResNetConfig(**kwargs)
    assert field in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ResNetZooError)


def test_replace_refuses_unknown_fields_and_suggests():
    config = resnet_zoo.get_config("resnet50")
    with pytest.raises(ConfigError, match="stem_pool"):
        config.replace(stem_pol=False)
    assert config.replace(stem_pool=False).stem_pool is False
    assert config.stem_pool is True  # frozen original untouched


def test_from_dict_refuses_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match="colour"):
        ResNetConfig.from_dict({"n_blocks": [1], "n_channels": [8], "colour": "red"})
    with pytest.raises(ConfigError, match="n_channels"):
        ResNetConfig.from_dict({"n_blocks": [1]})
    with pytest.raises(ConfigError, match="JSON"):
        ResNetConfig.from_json("{not json")


def test_the_written_out_signatures_agree_with_the_config():
    """ResNetBase and ResNet spell out every config field as a parameter, with its default (but
    ResNet's head of 1000 classes), and torchvision's norm_layer, a build choice outside the
    config; the config is built once from them."""
    import dataclasses
    import inspect

    from resnet_zoo import ResNet, ResNetBase, ResNetConfig

    fields = {f.name: f.default for f in dataclasses.fields(ResNetConfig)}
    for cls in (ResNetBase, ResNet):
        params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
        assert params.pop("norm_layer").default is None
        assert set(params) == set(fields), cls
        for name, p in params.items():
            if fields[name] is not dataclasses.MISSING and (cls, name) != (ResNet, "num_classes"):
                assert p.default == fields[name], (cls.__name__, name)
    assert inspect.signature(ResNet.__init__).parameters["num_classes"].default == 1000
    model = ResNet([1, 1], [8, 16], stem_pool=True, num_classes=3)
    assert model.config == ResNetConfig(n_blocks=(1, 1), n_channels=(8, 16), stem_pool=True, num_classes=3)


def test_a_network_too_deep_or_too_wide_to_be_a_resnet_is_refused_before_building():
    """#36: n_blocks=[10**6, 1, 1] through create or torch.hub built until memory ran out. Under
    a 3 GB address-space cap, in a subprocess, it is now a one-line ConfigError at once."""
    import subprocess
    import sys

    code = (
        "import resource, resnet_zoo\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "for kw in ({'n_blocks': [10**6, 1, 1]}, {'n_channels': [16, 32, 10**7]}):\n"
        "    try:\n"
        "        resnet_zoo.create('cifar_resnet20', **kw)\n"
        "    except resnet_zoo.ConfigError as e:\n"
        "        print(type(e).__name__, str(e).splitlines()[0][:40])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("ConfigError") == 2


def test_features_only_takes_a_bool_not_a_truthy_string():
    import pytest

    import resnet_zoo

    with pytest.raises(resnet_zoo.ConfigError, match="features_only must be True or False"):
        resnet_zoo.create("cifar_resnet20", features_only="yes")
