#!/usr/bin/env bash
# The test command: set up (idempotent), lint, run the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
