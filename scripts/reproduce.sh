#!/usr/bin/env bash
# Set up the environment if needed, then run the project's main job on its defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="real" bash scripts/setup.sh
. .venv/bin/activate
abba-analysis reproduce "$@"
