#!/usr/bin/env bash
# Create (or reuse) .venv and install the project with the extras named in $EXTRAS.
# torch is installed first, pinned, so that pip does not pull a multi-GB CUDA build;
# set TORCH_SPEC to choose another (any torch >= 2.2 works).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${EXTRAS:-dev}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "$TORCH_SPEC"
python -m pip install -q -e ".[${EXTRAS}]"
