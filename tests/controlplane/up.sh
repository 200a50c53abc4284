#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager on
# 127.0.0.1 (no kubelet, no scheduler: pods are created but never run). Builds the binaries on
# first use (build.sh), generates a CA and certificates with openssl, writes an admin kubeconfig,
# records PIDs, and prints `export KUBECONFIG=...`. Idempotent: a running control plane is reused.
#
# Environment: RAGDOLL_CLUSTER_DIR (state), RAGDOLL_CLUSTER_API_PORT (16443),
#              RAGDOLL_CLUSTER_ETCD_PORT (23791).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${RAGDOLL_CLUSTER_DIR:-${TMPDIR:-/tmp}/ragdoll-cluster-$(id -u)}"
api_port="${RAGDOLL_CLUSTER_API_PORT:-16443}"
etcd_port="${RAGDOLL_CLUSTER_ETCD_PORT:-23791}"
peer_port=$((etcd_port + 1))
pki="$state/pki"
log() { printf 'up.sh: %s\n' "$*" >&2; }

for tool in openssl curl; do
  command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
bin="$("$here/build.sh")"
mkdir -p "$pki" "$state/logs"

admin_curl() {
  curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$api_port$1"
}

running() {
  [ -f "$state/pids" ] || return 1
  while read -r pid; do kill -0 "$pid" 2>/dev/null || return 1; done <"$state/pids"
  admin_curl /readyz >/dev/null 2>&1
}

if running; then
  log "control plane already running ($state)"
  echo "export KUBECONFIG=$state/kubeconfig"
  exit 0
fi
# Leftovers of a crashed run.
"$here/down.sh" >/dev/null 2>&1 || true

# --- certificates -----------------------------------------------------------------------------
sign() { # name subject ext-section [extra-config]
  local name="$1" subject="$2" ext="$3" ca="${4:-ca}"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$pki/$name.key" -out "$pki/$name.csr" \
    -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -CAcreateserial -out "$pki/$name.crt" -days 3650 -sha256 \
    -extfile "$pki/openssl.cnf" -extensions "$ext" 2>/dev/null
}
if [ ! -f "$pki/admin.crt" ]; then
  log "generating certificates in $pki"
  cat >"$pki/openssl.cnf" <<EOF
[server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
  for ca in ca front-proxy-ca; do
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$pki/$ca.key" -out "$pki/$ca.crt" \
      -days 3650 -subj "/CN=ragdoll-test-$ca" 2>/dev/null
  done
  sign apiserver "/CN=kube-apiserver" server
  sign admin "/O=system:masters/CN=admin" client
  sign controller-manager "/CN=system:kube-controller-manager" client
  sign front-proxy-client "/CN=front-proxy-client" client front-proxy-ca
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi

kubeconfig() { # file user cert key
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ragdoll-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$3.crt
    client-key: $pki/$3.key
contexts:
- name: ragdoll-test
  context: {cluster: ragdoll-test, user: $2, namespace: default}
current-context: ragdoll-test
EOF
}
kubeconfig "$state/kubeconfig" admin admin
kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager controller-manager

: >"$state/pids"
start() { # name args...
  local name="$1"; shift
  "$@" >"$state/logs/$name.log" 2>&1 &
  echo $! >>"$state/pids"
}
wait_for() { # what command...
  local what="$1"; shift
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$what did not become ready; last log lines:"
  tail -n 30 "$state/logs/$what.log" >&2 || true
  exit 1
}

# --- etcd ---------------------------------------------------------------------------------------
rm -rf "$state/etcd"
start etcd "$bin/etcd" --name default --data-dir "$state/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn
wait_for etcd curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

# --- kube-apiserver -----------------------------------------------------------------------------
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names front-proxy-client \
  --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
  --requestheader-extra-headers-prefix X-Remote-Extra- \
  --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --authorization-mode Node,RBAC --service-cluster-ip-range 10.0.0.0/24 \
  --endpoint-reconciler-type none --v 0
wait_for kube-apiserver admin_curl /readyz

# --- kube-controller-manager --------------------------------------------------------------------
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$state/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 0 \
  --use-service-account-credentials --root-ca-file "$pki/ca.crt" \
  --service-account-private-key-file "$pki/sa.key" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --leader-elect=false --v 0
sleep 0.5
kill -0 "$(tail -n 1 "$state/pids")" 2>/dev/null || { tail -n 30 "$state/logs/kube-controller-manager.log" >&2; exit 1; }

log "control plane up: API https://127.0.0.1:$api_port, state in $state"
echo "export KUBECONFIG=$state/kubeconfig"
