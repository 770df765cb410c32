#!/usr/bin/env bash
# The main job, offline: set up a virtualenv (.venv, or $VENV) with the runtime dependencies only,
# then classify the bundled digit images with the shipped
# model (cifar_resnet20.digits) and extract their features. Each file is named after the digit
# it shows, so the predictions can be checked by eye.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}  # CI sets another, so that the test extra cannot hide a missing dependency
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
export HF_HUB_OFFLINE=1  # nothing here needs the network
echo "== this CPU: the fast path's dtype ('auto') follows what it computes fast"
"$VENV/bin/resnet-zoo" info --cpu
echo "== predict: weights/samples/digit_N.png shows the digit N"
"$VENV/bin/resnet-zoo" predict cifar_resnet20.digits weights/samples/*.png --top 1
echo "== features: one pooled 64-d vector per image"
mkdir -p build
"$VENV/bin/resnet-zoo" features cifar_resnet20.digits weights/samples --out build/digit_features.safetensors --quiet
echo "== the model"
"$VENV/bin/resnet-zoo" weights list | grep digits
