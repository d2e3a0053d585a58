#!/usr/bin/env bash
# Set up the environment if needed, lint the code and notebooks (ruff: pyflakes rules, zip without strict=), build the
# documentation with warnings as errors (docs/_build/html), then run the whole test suite (tests/, doctests, notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="dev,docs,real,dask" bash scripts/setup.sh
. .venv/bin/activate
python -m ruff check --quiet abba_analysis tests benchmarks notebooks docs
python -m sphinx -W --keep-going -q -b html docs docs/_build/html
python -m pytest -n 2 "$@"
