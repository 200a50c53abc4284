#!/usr/bin/env bash
# Stops the test control plane started by up.sh: only the processes it recorded.
# `down.sh --purge` also deletes its state (certificates, etcd data, logs).
set -euo pipefail
state="${RAGDOLL_CLUSTER_DIR:-${TMPDIR:-/tmp}/ragdoll-cluster-$(id -u)}"
if [ -f "$state/pids" ]; then
  # Stop in reverse start order: controller-manager, apiserver, etcd.
  for pid in $(tac "$state/pids"); do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $(tac "$state/pids"); do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$state/pids"
  echo "down.sh: control plane stopped" >&2
else
  echo "down.sh: not running ($state)" >&2
fi
if [ "${1:-}" = "--purge" ]; then
  rm -rf "$state"
fi
