#!/usr/bin/env bash
# Makes a cluster's access secrets (docs/security.md), once: ~/.rrstream/secrets.env
# (RRSTREAM_AUTH=required, the viewer-token secret every gateway replica shares, where
# the API keys' digests are) and ~/.rrstream/api-keys.sha256 (one digest per line).
# Prints the new API key once; only its digest is stored. The cluster configs copy both
# files to every node (file_mounts) and load them before `ray start`.
#   bash scripts/cluster-secrets.sh            # first time: secret + one API key
#   bash scripts/cluster-secrets.sh --add-key  # another API key
set -euo pipefail
dir="${RRSTREAM_SECRETS_DIR:-$HOME/.rrstream}"
mkdir -p "$dir" && chmod 700 "$dir"
env_file="$dir/secrets.env" keys_file="$dir/api-keys.sha256"
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
if [[ ! -f "$env_file" ]]; then
  umask 077
  cat > "$env_file" <<ENV
RRSTREAM_AUTH=required
RRSTREAM_TOKEN_SECRET=$(random)
RRSTREAM_API_KEYS_FILE=\$HOME/.rrstream/api-keys.sha256
ENV
  echo "[secrets] wrote $env_file"
elif [[ "${1:-}" != "--add-key" ]]; then
  echo "[secrets] $env_file exists; --add-key adds an API key" >&2
  exit 0
fi
key="$(random)"
umask 077
printf '%s\n' "$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)" >> "$keys_file"
echo "[secrets] API key (shown once; its digest is in $keys_file): $key"
