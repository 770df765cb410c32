"""A broken weights catalogue (the manifest, the labels): a ConfigError naming the file."""

import json

import pytest

from resnet_zoo import ConfigError


@pytest.mark.parametrize(
    "write",
    [
        lambda p: p.mkdir(),
        lambda p: p.write_bytes(b"\xff\xfe{\x00"),
        lambda p: p.write_text(
            json.dumps(
                {
                    "weights": {
                        "cifar_resnet20.x": {
                            "filename": "model.safetensors",
                            "source": "resnet_zoo",
                            "hf_hub_id": "a/b",
                            "preprocessing": {"input_size": "big"},
                        }
                    }
                }
            )
        ),
        lambda p: p.write_text(
            json.dumps(
                {
                    "weights": {
                        "cifar_resnet20.x": {
                            "filename": "model.safetensors",
                            "source": "resnet_zoo",
                            "hf_hub_id": "a/b",
                            "preprocessing": [1, 2],
                        }
                    }
                }
            )
        ),
    ],
    ids=["directory", "not-utf8", "input-size-text", "preprocessing-list"],
)
def test_a_broken_manifest_is_a_config_error(tmp_path, monkeypatch, write):
    from resnet_zoo import manifest

    path = tmp_path / "manifest.json"
    write(path)
    monkeypatch.setenv("RESNET_ZOO_MANIFEST", str(path))
    manifest._load.cache_clear()
    try:
        with pytest.raises(ConfigError, match="manifest|preprocessing"):
            manifest.load_manifest()
    finally:
        manifest._load.cache_clear()


def test_a_missing_labels_file_is_a_config_error():
    from resnet_zoo.manifest import read_labels

    with pytest.raises(ConfigError, match="class names file"):
        read_labels("no_such_labels.txt")
