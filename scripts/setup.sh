#!/usr/bin/env bash
# Prepares a checkout to run: Node + npm, the Python venv, the built viewer, a Chromium.
# Idempotent and quick when nothing changed: each slow step is skipped while the
# stamp under .setup-stamps/ still matches what it was made from.
#
#   RRSTREAM_CHROMIUM=/path/to/chromium   use this browser, skip the search
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STAMPS=$ROOT/.setup-stamps
VENV=$ROOT/.venv
mkdir -p "$STAMPS"

log() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }
hash_of() { sha256sum "$1" | cut -d' ' -f1; }
stamp_matches() { [[ -f $STAMPS/$1 && "$(cat "$STAMPS/$1")" == "$2" ]]; }
write_stamp() { printf '%s' "$2" >"$STAMPS/$1"; }
# Runs a command with its output indented under our prefix; keeps its exit status.
prefixed() { "$@" 2>&1 | sed -u 's/^/[setup]   /'; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root or sudo to run: $*"
  fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these yourself: $*"
  if [[ $APT_UPDATED -eq 0 ]]; then
    log "apt-get update"
    prefixed as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  prefixed as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# --- Node.js and npm ---------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "node/npm missing"
  apt_install nodejs npm
fi
log "node $(node --version), npm $(npm --version 2>/dev/null)"

# --- Python venv -------------------------------------------------------------------
pick_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  PYTHON=$(pick_python) || die "Python >= 3.11 not found (tried python3.11, python3)"
  log "creating .venv with $PYTHON ($("$PYTHON" --version))"
  if ! "$PYTHON" -m venv --clear "$VENV" >/dev/null 2>&1; then
    # Debian ships venv's ensurepip separately.
    apt_install python3-venv
    prefixed "$PYTHON" -m venv --clear "$VENV"
  fi
  rm -f "$STAMPS/pip"
fi

PYPROJECT_HASH=$(hash_of pyproject.toml)
if stamp_matches pip "$PYPROJECT_HASH" &&
  "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("rrstream")' 2>/dev/null; then
  log "python packages up to date"
else
  log "pip install -e '.[test]'"
  prefixed "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  write_stamp pip "$PYPROJECT_HASH"
fi

# --- Frontend ----------------------------------------------------------------------
cd "$ROOT/frontend"
LOCK_HASH=$(hash_of package-lock.json)
if stamp_matches npm "$LOCK_HASH" && [[ -d node_modules ]]; then
  log "node modules up to date"
else
  log "npm ci"
  prefixed npm ci --no-audit --no-fund --loglevel=error
  write_stamp npm "$LOCK_HASH"
fi
# npm may refuse esbuild's install script; the platform binary package still works.
ESBUILD_VERSION=$(npx --no-install esbuild --version 2>/dev/null) ||
  die "esbuild does not run after npm ci; try: (cd frontend && npm rebuild esbuild)"
log "esbuild $ESBUILD_VERSION; building the viewer"
prefixed node build.mjs
cd "$ROOT"

# --- Chromium ----------------------------------------------------------------------
playwright_chromium() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
from pathlib import Path
from playwright.sync_api import sync_playwright

with sync_playwright() as p:
    path = p.chromium.executable_path
print(path if path and Path(path).exists() else "")
PY
}

system_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}

if [[ -n ${RRSTREAM_CHROMIUM:-} ]]; then
  [[ -x $RRSTREAM_CHROMIUM && ! -d $RRSTREAM_CHROMIUM ]] ||
    die "RRSTREAM_CHROMIUM=$RRSTREAM_CHROMIUM is not an executable file"
  log "chromium: $RRSTREAM_CHROMIUM (from RRSTREAM_CHROMIUM)"
else
  # The stamp holds "<playwright version> <origin> <path>"; a new Playwright wants
  # its own Chromium build, so it is worth another download attempt.
  PW_VERSION=$("$VENV/bin/python" -c \
    'import importlib.metadata as m; print(m.version("playwright"))')
  CHROMIUM=""
  if [[ -f $STAMPS/chromium ]]; then
    read -r stamp_version stamp_origin stamp_path <"$STAMPS/chromium" || true
    if [[ ${stamp_version:-} == "$PW_VERSION" && -x ${stamp_path:-} ]]; then
      CHROMIUM=$stamp_path
      log "chromium: $CHROMIUM ($stamp_origin, remembered)"
    fi
  fi
  if [[ -z $CHROMIUM ]]; then
    with_deps=()
    [[ $(id -u) -eq 0 ]] && with_deps=(--with-deps)
    PW_LOG=$STAMPS/playwright-install.log
    log "trying: playwright install ${with_deps[*]} chromium (up to 5 min; log: $PW_LOG)"
    if timeout 300 "$VENV/bin/playwright" install "${with_deps[@]}" chromium >"$PW_LOG" 2>&1; then
      CHROMIUM=$(playwright_chromium) || true
      [[ -n $CHROMIUM ]] && origin=playwright
    else
      reason=$(grep -m1 -E '^(Error|Failed)' "$PW_LOG" || tail -n1 "$PW_LOG")
      log "Playwright's Chromium could not be installed (${reason:-no output}); trying a system Chromium"
    fi
    if [[ -z $CHROMIUM ]]; then
      CHROMIUM=$(system_chromium) || true
      origin=system
    fi
    if [[ -z $CHROMIUM ]]; then
      if apt_install chromium; then
        CHROMIUM=$(system_chromium) || true
        origin=apt
      fi
    fi
    [[ -n $CHROMIUM ]] ||
      die "no Chromium found. Install one and set RRSTREAM_CHROMIUM=/path/to/chromium"
    write_stamp chromium "$PW_VERSION $origin $CHROMIUM"
    log "chromium: $CHROMIUM ($origin)"
  fi
fi

# --- ffmpeg (exports) ----------------------------------------------------------------
# Exports (pipeline/export) pipe the replayed frames to ffmpeg's libvpx; the tests read
# the files back with ffprobe. Debian's package has both.
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  log "ffmpeg missing"
  apt_install ffmpeg
fi
log "ffmpeg: $(ffmpeg -hide_banner -version 2>/dev/null | head -n1)"

# --- Test-only tools ----------------------------------------------------------------
# tests/integration/test_local_cluster.py runs cluster/loopback.yaml with `ray up` over
# SSH to 127.0.0.2; it needs an sshd binary and rsync (it starts the sshd itself).
# The GCS fault-tolerance tests (test_gcs_restart.py, the loopback cluster) keep the GCS
# in a Redis they start themselves: they need Debian's redis-server binary.
if [[ ${RRSTREAM_SETUP_TESTS:-0} == 1 ]]; then
  missing=()
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  command -v rsync >/dev/null 2>&1 || missing+=(rsync)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if ((${#missing[@]})); then
    # The packages' own services must not start: the tests run their sshd and Redis on
    # loopback only, on ports of their own.
    if [[ $(id -u) -eq 0 && ! -e /usr/sbin/policy-rc.d ]]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      apt_install "${missing[@]}"
      rm -f /usr/sbin/policy-rc.d
    else
      apt_install "${missing[@]}"
    fi
  fi
fi

log "done"
