"""The route of a name through the package: which modules a call visits, and how often it
comes back.

Traces ``create(NAME, pretrained=True)`` against a local Hub (tests/hubserver.py on
127.0.0.1, torchvision-layout weights for ``resnet18.tv_in1k``) and a shipped tag, and the
command ``resnet-zoo predict resnet18.tv_in1k PHOTO`` from its parser to its output, and counts:

- steps: distinct resnet_zoo functions called (the network's leaf modules, ``config`` and ``blocks``,
  are construction detail and not counted);
- crossings: the steps that go from one module into another;
- modules: distinct resnet_zoo modules visited;
- revisits: crossings into a module the route had already entered and left (going back);
- climbs: crossings against the import direction, into a module that imports the caller's
  (statically or lazily): a cycle, or a callback the caller was handed (``build``);
- repeated: resnet_zoo functions called more than once on the route (the same lookup twice).

    python scripts/route.py [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import resnet_zoo  # noqa: E402

PKG = str(Path(resnet_zoo.__file__).parent)
LEAVES = {"config", "blocks", "errors", "util.checks"}  # construction detail and the number checks


def _module(code) -> str | None:
    f = code.co_filename
    if not f.startswith(PKG):
        return None
    rel = os.path.relpath(f, PKG)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def import_graph() -> dict[str, set[str]]:
    """Module -> the resnet_zoo modules it imports, at the top or inside functions."""
    import ast

    names = {}
    for path in Path(PKG).rglob("*.py"):
        rel = os.path.relpath(path, PKG)[:-3].replace(os.sep, ".")
        mod = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
        names["(package)" if mod == "__init__" else mod] = path
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        package = ("" if mod == "(package)" else mod) if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}".strip(".")
                    deps.add(sub if sub in names else (target or "(package)"))
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                full = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for f in full:
                    if f.startswith("resnet_zoo."):
                        deps.add(f[len("resnet_zoo.") :])
        graph[mod] = {d for d in deps if d in names and d != mod and d != ""}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others."""
    reach = _closure(graph)
    cycles, seen = [], set()
    for mod in sorted(graph):
        group = sorted({mod} | {m for m in reach[mod] if mod in reach[m]})
        if len(group) > 1 and group[0] not in seen:
            seen.update(group)
            cycles.append(group)
    return cycles


def _closure(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        out[start] = seen
    return out


def layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """Modules by layer: layer 0 imports no other module, layer k only modules below k."""
    level: dict[str, int] = {}

    def depth(mod: str, stack: tuple = ()) -> int:
        if mod not in level:
            if mod in stack:
                raise ValueError(f"import cycle through {mod}")
            level[mod] = 1 + max((depth(d, stack + (mod,)) for d in graph[mod]), default=-1)
        return level[mod]

    for mod in graph:
        depth(mod)
    out: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for mod, k in level.items():
        out[k].append(mod)
    return [sorted(group) for group in out]


PACKAGES = ("util", "pretrained", "inference", "features", "train", "cli")
BOX_ORDER = ("util", "catalogues", "pretrained", "network", "inference", "features", "train", "cli")


# The top level holds two layers: the catalogues, which the weights package reads, and the
# network with its factory, which loads weights through it.
CATALOGUES = ("config", "registry", "manifest", "timm_api", "cpu", "device", "_version")


def box_of(mod: str) -> str:
    """The box of a module in the package picture: its package; ``errors`` joins ``util``
    (which imports nothing else); a top-level module is a catalogue or the network."""
    head = mod.split(".")[0]
    if head in PACKAGES:
        return head
    if mod == "errors":
        return "util"
    return "catalogues" if mod in CATALOGUES else "network"


def package_graph() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(box -> its modules, box -> the boxes it imports), from the module graph; the package's
    ``__init__`` (its public names, re-exported) and ``__main__`` are in no box."""
    graph = {m: d for m, d in import_graph().items() if m not in ("(package)", "__main__")}
    members: dict[str, list[str]] = {box: [] for box in BOX_ORDER}
    edges: dict[str, set[str]] = {box: set() for box in BOX_ORDER}
    for mod, deps in graph.items():
        box = box_of(mod)
        members[box].append(mod)
        edges[box] |= {box_of(d) for d in deps if d in graph} - {box}
    return {b: sorted(m) for b, m in members.items()}, edges


def import_picture() -> str:
    """Markdown: the packages as boxes, each with its modules and the boxes it imports, and a
    mermaid picture of the imports between boxes that are not implied by others."""
    members, edges = package_graph()
    reach = _closure(edges)
    lines = ["```"]
    for box in reversed(BOX_ORDER):
        lines.append(f"{box:<11} imports:    {', '.join(b for b in BOX_ORDER if b in edges[box]) or 'nothing'}")
        lines.append(f"{'':<11} modules:    {', '.join(members[box])}")
    lines += ["```", "", "```mermaid", "flowchart BT"]
    for box in BOX_ORDER:
        for dep in (b for b in BOX_ORDER if b in edges[box]):
            if not any(dep in reach[other] for other in edges[box] if other != dep):
                lines.append(f"    {box} --> {dep}")
    lines.append("```")
    return "\n".join(lines) + "\n"


REACH = _closure(import_graph())


def trace(fn) -> dict:
    stack: list[str | None] = []
    steps: list[str] = []
    crossings: list[str] = []
    revisits: list[str] = []
    climbs: list[str] = []
    entered: set[str] = set()
    calls: collections.Counter = collections.Counter()
    modules: set[str] = set()

    def prof(frame, event, arg):
        if event == "call":
            mod = _module(frame.f_code)
            caller = next((m for m in reversed(stack) if m is not None), None)
            name = frame.f_code.co_qualname
            if mod is not None:
                modules.add(mod)
            if (
                mod is not None
                and mod not in LEAVES
                and caller is not None
                and not frame.f_code.co_name.startswith(("__", "<"))
            ):
                step = f"{mod}.{name}"
                steps.append(step)
                calls[step] += 1
                if caller != mod:
                    crossings.append(f"{caller} -> {step}")
                    if caller in REACH.get(mod, ()):
                        climbs.append(crossings[-1])
                    if mod in entered:
                        revisits.append(crossings[-1])
                    entered.add(mod)
            stack.append(mod)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return {
        "steps": len(calls),  # distinct functions: per-key loops count once
        "crossings": len(crossings),
        "modules": sorted(modules),
        "revisits": revisits,
        "climbs": climbs,
        "repeated": {k: v for k, v in calls.items() if v > 1},
        "route": crossings,
    }


def _predict(photo: str) -> None:
    import contextlib
    import io

    from resnet_zoo.cli import main as cli

    with contextlib.redirect_stdout(io.StringIO()):
        if cli(["predict", "resnet18.tv_in1k", photo, "--json"]) != 0:
            raise SystemExit("resnet-zoo predict failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--route", action="store_true", help="print every step")
    args = parser.parse_args()

    import torch
    import torchvision
    from hubserver import HubServer
    from safetensors.torch import save

    server = HubServer()
    scratch = tempfile.TemporaryDirectory(prefix="route-cache-")  # removed when the trace is done
    os.environ.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=scratch.name)
    torch.manual_seed(0)
    server.add_file("timm/resnet18.tv_in1k", "model.safetensors", save(torchvision.models.resnet18().state_dict()))
    photo = str(
        ROOT / "weights" / "samples" / "cifar10" / sorted(os.listdir(ROOT / "weights" / "samples" / "cifar10"))[0]
    )
    resnet_zoo.create("cifar_resnet20", pretrained=True)  # first imports happen outside the trace
    _predict(photo)
    results = {
        "resnet18.tv_in1k (Hub)": trace(lambda: resnet_zoo.create("resnet18.tv_in1k", pretrained=True)),
        "cifar_resnet20 (shipped)": trace(lambda: resnet_zoo.create("cifar_resnet20", pretrained=True)),
        "resnet-zoo predict resnet18.tv_in1k PHOTO": trace(lambda: _predict(photo)),
    }
    server.stop()
    scratch.cleanup()
    cycles = import_cycles(import_graph())
    if args.json:
        print(json.dumps({"import_cycles": cycles, "routes": results}, indent=2))
        return 0
    print(f"import cycles: {len(cycles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in cycles))
    for what, r in results.items():
        print(
            f"{what}: {r['steps']} steps, {r['crossings']} between modules, through "
            f"{len(r['modules'])} modules; {len(r['climbs'])} climbs; {len(r['revisits'])} revisits; "
            f"{len(r['repeated'])} functions called twice or more"
        )
        print(f"  modules: {', '.join(r['modules'])}")
        for step in r["climbs"]:
            print(f"  climb: {step}")
        for step in r["revisits"]:
            print(f"  revisit: {step}")
        for name, n in sorted(r["repeated"].items()):
            print(f"  repeated: {name} x{n}")
        if args.route:
            for step in r["route"]:
                print(f"    {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
