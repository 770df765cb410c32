#!/usr/bin/env bash
# Set up .venv and run the main job: the registry, then the facts of the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
.venv/bin/resnet-zoo list
.venv/bin/resnet-zoo info "${1:-resnet50}"
