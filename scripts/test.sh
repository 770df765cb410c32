#!/usr/bin/env bash
# Set up .venv with the test extra and run the whole test suite (no network beyond the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
# The labml reference implementation, for parity tests only: its declared dependencies
# (torchtext, fairscale) are not needed by labml_nn.resnet and would pin an old torch.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    "labml-nn==0.5.1" "labml==0.5.3" "labml-helpers==0.4.89"
# Formatting and lint (configured in pyproject.toml), before anything slow.
.venv/bin/ruff format --check --quiet resnet_zoo tests scripts benchmarks hubconf.py
.venv/bin/ruff check --quiet resnet_zoo tests scripts benchmarks hubconf.py
.venv/bin/mypy  # the package, configured in pyproject.toml
# The installed package, as a user gets it: a wheel (not editable), its CLI, every module, the main job.
PYTHON=.venv/bin/python bash scripts/check_wheel.sh
# The whole suite (CI runs it all); `bash scripts/test.sh -m "not slow"` is the quick selection.
exec .venv/bin/python -m pytest -q --durations=25 "$@"
