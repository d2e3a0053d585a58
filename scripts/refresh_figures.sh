#!/usr/bin/env bash
# Maintainers: rerun the main job and write its figures, tables and summary to the repository's figures/
# (the README shows them). Users run scripts/reproduce.sh, which writes to results/ and leaves tracked files alone.
# Resumable like reproduce: the run directories stay in results/.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="real" bash scripts/setup.sh
. .venv/bin/activate
abba-analysis reproduce --out figures "$@"
