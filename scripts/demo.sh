#!/usr/bin/env bash
# The main job, offline: set up .venv, then classify the bundled digit images with the shipped
# model (cifar_resnet20.digits) and extract their features. Each file is named after the digit
# it shows, so the predictions can be checked by eye.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
export HF_HUB_OFFLINE=1  # nothing here needs the network
echo "== predict: weights/samples/digit_N.png shows the digit N"
.venv/bin/resnet-zoo predict cifar_resnet20.digits weights/samples/*.png --top 1
echo "== features: one pooled 64-d vector per image"
mkdir -p build
.venv/bin/resnet-zoo features cifar_resnet20.digits weights/samples --out build/digit_features.safetensors --quiet
echo "== the model"
.venv/bin/resnet-zoo weights list | grep digits
