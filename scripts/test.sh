#!/usr/bin/env bash
# Sets up (when needed) and runs every test: `scripts/test.sh [pytest options]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RRSTREAM_SETUP_TESTS=1 bash scripts/setup.sh
if [[ -d frontend/test ]]; then
  echo "[test] node --test frontend/test/"
  (cd frontend && node --test test/)
fi
echo "[test] pytest $*"
exec .venv/bin/python -m pytest "$@"
