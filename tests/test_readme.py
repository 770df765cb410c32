"""The Python blocks of the README and of docs/ run as written: every block not marked ``# needs
the Hub`` (or ``# needs a Ray cluster``: tests/features/test_ray_data.py runs that pipeline on a local
instance), each on its own, offline, in a directory holding the files the blocks name."""

import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT
from images import sample_photos

BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
NEEDS_HUB = "# needs the Hub"
NEEDS_CLUSTER = "# needs a Ray cluster"


DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _blocks(files=DOCS) -> list[tuple[str, str]]:
    """``(file:line, code)`` of every Python block."""
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        out += [
            (f"{path.relative_to(REPO_ROOT)}:{text[: m.start()].count(chr(10)) + 1}", m.group(1))
            for m in BLOCK.finditer(text)
        ]
    return out


def test_the_readme_has_blocks_of_both_kinds():
    blocks = _blocks([REPO_ROOT / "README.md"])
    assert sum(not code.startswith((NEEDS_HUB, NEEDS_CLUSTER)) for _, code in blocks) >= 5
    assert any(code.startswith(NEEDS_HUB) for _, code in blocks)
    # The torch.hub lines are among those that run: no torch.hub.help(..., source=...) left.
    hub_lines = [line for _, code in blocks for line in code.splitlines() if "torch.hub." in line]
    assert hub_lines and not any("help(" in line and "source=" in line for line in hub_lines)


@pytest.fixture
def readme_dir(tmp_path, monkeypatch):
    """photos/, cat.jpg, train_images/ and feature sets in feats/ and feats_pq/ (parquet), as the
    blocks expect."""
    photos = sample_photos()
    (tmp_path / "photos").mkdir()
    (tmp_path / "train_images").mkdir()
    for name, path in photos.items():
        shutil.copy(path, tmp_path / "photos" / name)
        shutil.copy(path, tmp_path / "train_images" / name)
    shutil.copy(next(p for p in sorted(photos.values()) if p.suffix == ".jpg"), tmp_path / "cat.jpg")
    import resnet_zoo
    from resnet_zoo.features import write_feature_set

    model = resnet_zoo.create("cifar_resnet20").eval()
    write_feature_set(model, [tmp_path / "photos"], tmp_path / "feats", progress=False)
    write_feature_set(model, [tmp_path / "photos"], tmp_path / "feats_pq", file_format="parquet", progress=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))  # datasets' cache, in the test's tree
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(
    "line,code",
    [b for b in _blocks() if not b[1].startswith((NEEDS_HUB, NEEDS_CLUSTER))],
    ids=lambda v: v if isinstance(v, str) and ":" in v and "\n" not in v else "",
)
def test_readme_block_runs(readme_dir, line, code):
    """Each block in its own interpreter, as a user pastes it (and so that runtimes a block
    starts, OpenVINO's and onnxruntime's threads, end with it)."""
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    code = code.replace("/path/to/resnet_zoo", str(REPO_ROOT))
    script = readme_dir / f"block_{line.replace('/', '_').replace(':', '_').replace('.', '_')}.py"
    script.write_text(code.replace("\n    ...\n", "\n    pass\n"), encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=readme_dir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{line} failed:\n{result.stderr[-3000:]}"
