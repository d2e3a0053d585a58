#!/usr/bin/env bash
# Set up the environment if needed, lint the code and notebooks (ruff: pyflakes rules, zip without strict=), then run the whole test suite
# (tests/, doctests, notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="dev,real,dask" bash scripts/setup.sh
. .venv/bin/activate
python -m ruff check --quiet abba_analysis tests benchmarks notebooks
python -m pytest -n 2 "$@"
