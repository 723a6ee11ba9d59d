#!/usr/bin/env bash
# Sets up (when needed) and starts rrstream with its demo: `scripts/demo.sh [rrstream up options]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/rrstream up "$@"
