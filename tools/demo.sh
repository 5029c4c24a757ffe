#!/usr/bin/env bash
# The main job: set up (idempotent), then run the end-to-end demonstration on the bundled data.
# Extra args go to `vistok demo` (e.g. --out DIR, --skip-eval).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
.venv/bin/vistok demo "$@"
