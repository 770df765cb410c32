#!/usr/bin/env bash
# What `pip install .` gives a user, checked: build the wheel, install it (not editable) into a
# virtualenv of the runtime dependencies only, then, from outside the clone, `resnet-zoo --help`,
# import every module of the installed package, and run the main job (scripts/demo.sh) on it.
# A package or data file missing from the wheel fails here, as it would for a user.
# The virtualenv ($WHEEL_VENV, default build/wheel-venv) keeps its dependencies between runs;
# resnet_zoo itself is removed and installed again from the new wheel every time.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PY=${PYTHON:-python3}
venv=${WHEEL_VENV:-build/wheel-venv}
pip_q=(-q --disable-pip-version-check)
rm -rf build/wheel
# Built from a copy of the files git tracks (what `pip install git+URL` builds): in the working
# tree, an earlier build's build/lib or the editable install's egg-info would fill in the
# packages that the configuration forgets.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
"$PY" - "$src" <<'PY'
import os, shutil, subprocess, sys
names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       check=True, capture_output=True).stdout.decode().split("\0")
for name in filter(os.path.isfile, names):  # a file deleted in the working tree is not copied
    os.makedirs(os.path.join(sys.argv[1], os.path.dirname(name)), exist_ok=True)
    shutil.copy2(name, os.path.join(sys.argv[1], name))
PY
"$PY" -m pip wheel "${pip_q[@]}" --no-deps -w build/wheel "$src" 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls build/wheel/resnet_zoo-*.whl)
[ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
"$venv/bin/python" -m pip uninstall "${pip_q[@]}" -y resnet_zoo >/dev/null 2>&1 || true
"$venv/bin/python" -m pip install "${pip_q[@]}" "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -m pip install "${pip_q[@]}" --force-reinstall --no-deps "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
cd /tmp  # nothing of the clone on sys.path
"$repo/$venv/bin/resnet-zoo" --help >/dev/null
"$repo/$venv/bin/python" - "$repo" <<'PY'
"""Import every module of the installed resnet_zoo; only a missing optional extra may stop one."""
import importlib, pkgutil, sys
from pathlib import Path

import resnet_zoo

where = Path(resnet_zoo.__file__).resolve()
if (Path(sys.argv[1]) / "resnet_zoo").resolve() in where.parents:
    sys.exit(f"resnet_zoo was imported from the clone ({where}), not from the installed wheel")
OPTIONAL = {"ray", "pyarrow", "pandas", "onnx", "onnxscript", "onnxruntime", "openvino", "matplotlib"}
imported, optional = 0, []
for info in pkgutil.walk_packages(resnet_zoo.__path__, "resnet_zoo."):
    if info.name.endswith(".__main__"):  # runs the CLI when imported
        continue
    try:
        importlib.import_module(info.name)
        imported += 1
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in OPTIONAL:
            raise
        optional.append(f"{info.name} (needs {e.name})")
from resnet_zoo.manifest import data_path
assert (data_path() / "manifest.json").is_file() and Path(resnet_zoo.__file__).parent in data_path().parents
print(f"wheel: {imported} modules import from {where.parent}; optional extras not installed: "
      f"{', '.join(optional) or 'none'}")
PY
cd "$repo"
VENV="$venv" SKIP_INSTALL=1 bash scripts/demo.sh >build/wheel-demo.log 2>&1 || { cat build/wheel-demo.log; exit 1; }
echo "wheel: the main job ran from the installed wheel (log: build/wheel-demo.log)"
