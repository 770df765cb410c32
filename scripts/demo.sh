#!/usr/bin/env bash
# The main job, offline: set up a virtualenv (.venv, or $VENV) with the runtime dependencies only,
# then classify ten bundled CIFAR-10 test photos (weights/samples/cifar10/<class>.jpg, one per
# class, the class in the file name) with cifar_resnet20's default weights and extract their
# features; then the second example, the bundled digit drawings with cifar_resnet20.digits.
# Each file is named after what it shows, so the predictions can be checked by eye.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}  # CI sets another, so that the test extra cannot hide a missing dependency
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# SKIP_INSTALL=1: run on what $VENV already has (scripts/check_wheel.sh installs the built wheel).
[ -n "${SKIP_INSTALL:-}" ] || "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e .
export HF_HUB_OFFLINE=1  # nothing here needs the network
echo "== this CPU: the fast path's dtype ('auto') follows what it computes fast"
"$VENV/bin/resnet-zoo" info --cpu
echo "== predict: weights/samples/cifar10/<class>.jpg is a CIFAR-10 test photo of that class"
"$VENV/bin/resnet-zoo" predict cifar_resnet20 weights/samples/cifar10/*.jpg --top 1
echo "== features: one pooled 64-d vector per photo"
mkdir -p build
"$VENV/bin/resnet-zoo" features cifar_resnet20 weights/samples/cifar10 --out build/cifar10_features.safetensors --quiet
echo "== second example: weights/samples/digit_N.png shows the digit N"
"$VENV/bin/resnet-zoo" predict cifar_resnet20.digits weights/samples/digit_*.png --top 1
echo "== the weights used"
"$VENV/bin/resnet-zoo" weights list | grep -E "^(weights|cifar_resnet20\.)"
