#!/usr/bin/env bash
# `make demo`: start the local Postgres, run the runtime with workers on a fresh demo database,
# ingest the sample documents (tests/fixtures/documents, tests/fixtures/media) with the local
# embedding model, print their status and run a semantic query that shares no word with its answer.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${RAGDOLL_BIN:-$root/target/debug/ragdoll}"
port="${RAGDOLL_DEMO_PORT:-18080}"
key="demo-key"

admin_url="$("$here/pg.sh" up | sed -n 's/^DATABASE_URL=//p')"
model_dir="$("$here/models.sh" | sed -n 's/^RAGDOLL_MODEL_DIR=//p')"
pgbin="$("$here/pg.sh" bin)"
PGOPTIONS="-c client_min_messages=warning" "$pgbin/psql" "$admin_url" -qc "DROP DATABASE IF EXISTS ragdoll_demo WITH (FORCE)" -c "CREATE DATABASE ragdoll_demo" >/dev/null
demo_url="${admin_url%/*}/ragdoll_demo"

log="$(mktemp -t ragdoll-demo.XXXXXX.log)"
echo "==> starting ragdoll serve --with-workers on 127.0.0.1:$port (log: $log)"
DATABASE_URL="$demo_url" RAGDOLL_API_KEYS="$key" RAGDOLL_MODEL_DIR="$model_dir" \
  "$bin" serve --with-workers --migrate --bind "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "server exited" >&2; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; echo "server not ready" >&2; exit 1; }

export RAGDOLL_SERVER="http://127.0.0.1:$port" RAGDOLL_API_KEY="$key"
echo "==> ragdoll ingest tests/fixtures/documents tests/fixtures/media --recursive --wait"
"$bin" ingest "$root/tests/fixtures/documents" "$root/tests/fixtures/media" --recursive --wait
echo
echo "==> ragdoll status"
"$bin" status
echo
query="photovoltaic growth atop industrial buildings"
echo "==> ragdoll search \"$query\" --mode semantic   (no word in common with the answer)"
"$bin" search "$query" --mode semantic --limit 2 --threshold 0.2
