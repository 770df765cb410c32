"""hubconf.py: one documented entry point per registered name, loadable without installing."""

import ast
import importlib.util
import inspect
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

import resnet_zoo


def _load_hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO_ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_public_callables_equal_the_registry():
    hub = _load_hubconf()
    # torch.hub.list's own rule: every callable whose name does not start with "_".
    public = [n for n, obj in vars(hub).items() if callable(obj) and not n.startswith("_")]
    assert sorted(public) == sorted(resnet_zoo.list_models())
    assert hub.dependencies == ["torch", "safetensors", "huggingface_hub"]


def test_every_entry_is_a_real_documented_def():
    tree = ast.parse((REPO_ROOT / "hubconf.py").read_text())
    defs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, "hubconf imports nothing at module level"
    hub = _load_hubconf()
    for name in resnet_zoo.list_models():
        assert name in defs
        fn = getattr(hub, name)
        assert fn.__doc__ and "parameters" in fn.__doc__
        params = inspect.signature(fn).parameters
        assert params["pretrained"].default is False
        assert any(p.kind is p.VAR_KEYWORD for p in params.values())


def test_entry_builds_the_model_and_passes_kwargs():
    hub = _load_hubconf()
    m = hub.cifar_resnet20(num_classes=4)
    assert isinstance(m, resnet_zoo.ResNet) and m.num_classes == 4


@pytest.mark.slow
def test_torch_hub_load_from_a_fresh_copy_in_another_directory(tmp_path):
    """A copy of the repo that is not installed, loaded from an unrelated working directory."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO_ROOT / "resnet_zoo", clone / "resnet_zoo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "hubconf.py", clone / "hubconf.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import torch, sys\n"
        f"m = torch.hub.load({str(clone)!r}, 'resnet50', source='local', num_classes=3)\n"
        "import resnet_zoo\n"
        f"assert resnet_zoo.__file__.startswith({str(clone)!r}), resnet_zoo.__file__\n"
        "y = m.eval()(torch.randn(1, 3, 64, 64))\n"
        "print(type(m).__name__, tuple(y.shape))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ResNet (1, 3)"


@pytest.mark.slow
def test_generated_files_are_fresh():
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_entries_take_torchvisions_weights_and_progress(hub):
    """torchvision's keywords: weights="DEFAULT" / a tag / torchvision's enum / None, progress=."""
    import torch
    from safetensors.torch import save

    tv = pytest.importorskip("torchvision.models")
    entry = _load_hubconf()
    x = torch.randn(1, 3, 32, 32)
    shipped = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    with torch.no_grad():
        for weights in ("DEFAULT", "cifar10"):
            assert torch.equal(entry.cifar_resnet20(weights=weights, progress=False).eval()(x), shipped(x))
    assert entry.cifar_resnet20(weights=None).pretrained_info is None
    torch.manual_seed(0)
    reference = tv.resnet18().eval()
    hub.add_file("timm/resnet18.tv_in1k", "model.safetensors", save(reference.state_dict()))
    model = entry.resnet18(weights=tv.ResNet18_Weights.IMAGENET1K_V1).eval()  # torchvision's enum
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    with pytest.raises(resnet_zoo.ConfigError, match="not both"):
        entry.cifar_resnet20(pretrained=True, weights="DEFAULT")
    with pytest.raises(resnet_zoo.ConfigError, match="progress must be True or False"):
        entry.cifar_resnet20(progress="yes")
