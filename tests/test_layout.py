"""The package's shape: imports point one way, each job has one module, user-facing text is
self-contained."""

import importlib.util
import re
from dataclasses import MISSING, fields

import pytest
from conftest import REPO_ROOT

import resnet_zoo
from resnet_zoo.util.atomic import atomic_write

_spec = importlib.util.spec_from_file_location("route", REPO_ROOT / "scripts" / "route.py")
route = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(route)
GRAPH = route.import_graph()


def test_packages_import_only_the_packages_below_them():
    """The package picture of docs/architecture.md: util, catalogues, pretrained, network,
    inference, features / train, cli, each importing only boxes below it (no cycle)."""
    members, edges = route.package_graph()
    order = route.BOX_ORDER
    upward = {box: sorted(d for d in deps if order.index(d) > order.index(box)) for box, deps in edges.items()}
    assert {box: up for box, up in upward.items() if up} == {}
    assert route.import_cycles(edges) == [] and all(members.values())


def test_no_import_cycles():
    assert route.import_cycles(GRAPH) == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("pretrained")))
def test_the_weights_package_never_imports_the_model_or_what_uses_it(module):
    above = {"model", "factory", "inference", "features", "cli", "summary", "bench", "export", "(package)"}
    assert not (GRAPH[module] & above) and not any(d.startswith("train") for d in GRAPH[module])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("util")))
def test_util_imports_nothing_of_the_package_but_errors(module):
    assert not {d for d in GRAPH[module] if d != "errors" and not d.startswith("util")}


def test_nothing_imports_the_cli_and_only_the_hub_room_imports_huggingface_hub():
    assert not [m for m, deps in GRAPH.items() if "cli" in deps and m != "__main__"]
    users = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "resnet_zoo").rglob("*.py")
        if re.search(r"^\s*(from|import) huggingface_hub", p.read_text(), re.M)
    ]
    assert users == ["resnet_zoo/pretrained/hub.py"]


def test_no_module_imports_another_modules_private_names():
    """A private name two modules need has an owner, who makes it public."""
    import ast

    offenders = []
    for path in sorted((REPO_ROOT / "resnet_zoo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("resnet_zoo")):
                offenders += [
                    f"{path.relative_to(REPO_ROOT)}:{node.lineno} {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert offenders == []


def test_one_atomic_write():
    """Every write-to-a-temporary-name-then-rename goes through atomic_write."""
    offenders = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "resnet_zoo").rglob("*.py")
        if p.name != "atomic.py" and re.search(r"os\.replace\(|\.replace\(out\)|\.rename\(", p.read_text())
    ]
    assert offenders == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_write(target) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_train_flags_are_generated_from_trainconfig():
    from resnet_zoo.cli import build_parser
    from resnet_zoo.train import TrainConfig
    from resnet_zoo.train.config import NOT_FLAGS

    args = build_parser().parse_args(["train", "cifar_resnet20", "--dataset", "digits", "--out", "o"])
    for f in fields(TrainConfig):
        if f.name in NOT_FLAGS:
            continue
        default = f.default if f.default is not MISSING else None
        assert hasattr(args, f.name), f"no --{f.name.replace('_', '-')} flag"
        if f.name not in ("dataset", "out"):
            assert getattr(args, f.name) == default, f.name
    # Choices come from the config's own tuples.
    from resnet_zoo.train.config import DATASETS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "x", "--dataset", "mnist", "--out", "o"])
    assert len(DATASETS) == 4


def test_user_facing_text_is_self_contained():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "../shared" not in readme and "ARCHITECTURE.md" not in readme
    for p in list((REPO_ROOT / "docs").rglob("*.md")) + [REPO_ROOT / "hubconf.py"]:
        assert "../shared" not in p.read_text(), p
    assert "<owner>" not in (REPO_ROOT / "hubconf.py").read_text()
    for name in resnet_zoo.list_models():
        description = resnet_zoo.registry.get_entry(name).description
        assert not re.search(r"\bseed\b|model[12]\b", description), (name, description)


def test_the_architecture_doc_names_every_module():
    doc = (REPO_ROOT / "docs" / "architecture.md").read_text()
    modules = {
        p.relative_to(REPO_ROOT / "resnet_zoo").with_suffix("").as_posix()
        for p in (REPO_ROOT / "resnet_zoo").rglob("*.py")
        if not p.name.startswith("_") and p.name != "py.typed"
    }
    missing = sorted(r for r in modules if f"{r}.py" not in doc and f"{r.split('/')[-1]}.py" not in doc)
    assert missing == []


def _function_lengths():
    """(lines without the docstring, "path:line name") of every function in the package."""
    import ast

    for path in sorted((REPO_ROOT / "resnet_zoo").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                doc = (
                    body[0].end_lineno - body[0].lineno + 1
                    if body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(getattr(body[0], "value", None), ast.Constant)
                    and isinstance(body[0].value.value, str)
                    else 0
                )
                yield (
                    node.end_lineno - node.lineno + 1 - doc,
                    f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}",
                )


def test_modules_and_functions_stay_small():
    """A smoke alarm, not a budget: no module over 800 lines (a module that grows past it holds
    two jobs); at most two functions over 60 lines, docstrings excluded. Modules are split by
    what they hold, never to meet a line count."""
    sizes = {
        p.relative_to(REPO_ROOT).as_posix(): p.read_text().count("\n") for p in (REPO_ROOT / "resnet_zoo").rglob("*.py")
    }
    assert [p for p, n in sizes.items() if n > 800] == []
    long = sorted(f for f in _function_lengths() if f[0] > 60)
    assert len(long) <= 2, long


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(tmp_path, umask):
    """#36 case 16: shards, model.safetensors and a features file came out 0600 under umask 022
    while their JSON neighbours were 0644. Every file written now follows the umask."""
    import os

    from resnet_zoo.features import write_feature_set, write_features

    model = resnet_zoo.create("cifar_resnet20", pretrained=True).eval()
    photos = REPO_ROOT / "weights" / "samples" / "cifar10"
    old = os.umask(umask)
    try:
        write_feature_set(model, [photos], tmp_path / "set", shard_size=4, progress=False)
        write_features(model, [photos], tmp_path / "one.safetensors", progress=False)
        model.save_pretrained(tmp_path / "saved")
    finally:
        os.umask(old)
    written = [tmp_path / "one.safetensors", *(tmp_path / "set").glob("shard-*"), tmp_path / "set" / ".index.json"]
    written += [tmp_path / "saved" / "model.safetensors", tmp_path / "saved" / "config.json"]
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
