#!/usr/bin/env bash
# Smoke test of the control plane that scripts/install-kubernetes.sh builds:
# starts etcd and kube-apiserver on 127.0.0.1 (free ports, a temporary folder),
# asks the API server for its version and its namespaces with kubectl and a
# static token, then stops both and removes the folder, also when a step fails.
# Exits non-zero with the failing step named (and the logs' last lines).
#
#   scripts/smoke-kubernetes.sh            # builds first if needed (see install-kubernetes.sh)
#   KUBE_BIN=DIR scripts/smoke-kubernetes.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STARTUP_SECONDS=${STARTUP_SECONDS:-120}

fail() {
	echo "smoke-kubernetes: FAILED: $*" >&2
	exit 1
}
log() { echo "smoke-kubernetes: $*"; }

for tool in openssl curl python3; do
	command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is missing (apt-get install $tool)"
done

if [[ -z "${KUBE_BIN:-}" ]]; then
	KUBE_BIN=$("$ROOT/scripts/install-kubernetes.sh" | tail -n1) || fail "scripts/install-kubernetes.sh failed"
fi
for tool in etcd kube-apiserver kubectl; do
	[[ -x "$KUBE_BIN/$tool" ]] || fail "$KUBE_BIN/$tool is missing: run scripts/install-kubernetes.sh"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/isthmus-kube-smoke.XXXXXX")
ETCD_PID=
APISERVER_PID=
stop() { # stop PID NAME: TERM, up to 15 s, then KILL
	local pid=$1 name=$2 i
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "smoke-kubernetes: $name did not stop on TERM, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if ((status != 0)); then
		for f in etcd kube-apiserver; do
			if [[ -s "$WORK/$f.log" ]]; then
				echo "--- last lines of $f's log ---" >&2
				tail -n 20 "$WORK/$f.log" >&2
			fi
		done
	fi
	stop "$APISERVER_PID" kube-apiserver
	stop "$ETCD_PID" etcd
	rm -rf "$WORK"
	if ((status == 0)); then log "stopped etcd and kube-apiserver, removed $WORK"; fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports, chosen by the kernel (a port could in principle be taken
# between here and the server's bind; the server then fails and says so).
read -r ETCD_PORT ETCD_PEER_PORT API_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')

log "etcd:           $("$KUBE_BIN/etcd" --version | head -n1)"
log "kube-apiserver: $("$KUBE_BIN/kube-apiserver" --version)"
log "work folder:    $WORK"

log "starting etcd on 127.0.0.1:$ETCD_PORT (peer 127.0.0.1:$ETCD_PEER_PORT)"
"$KUBE_BIN/etcd" \
	--name smoke \
	--data-dir "$WORK/etcd-data" \
	--listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
	--initial-cluster "smoke=http://127.0.0.1:$ETCD_PEER_PORT" \
	>"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!

deadline=$((SECONDS + STARTUP_SECONDS))
until curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
	kill -0 "$ETCD_PID" 2>/dev/null || fail "etcd exited during startup"
	((SECONDS < deadline)) || fail "etcd was not healthy after ${STARTUP_SECONDS}s"
	sleep 0.5
done
log "etcd is healthy"

openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null || fail "openssl could not make the service-account key"
openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null || fail "openssl could not write the service-account public key"
TOKEN=$(openssl rand -hex 24)
# token,user,uid,"groups": system:masters is allowed everything under RBAC.
echo "$TOKEN,smoke-admin,smoke-admin,\"system:masters\"" >"$WORK/tokens.csv"

log "starting kube-apiserver on https://127.0.0.1:$API_PORT"
# --endpoint-reconciler-type=none: the reconciler would publish the loopback
# advertise address in the kubernetes Service's endpoints, which validation
# refuses; nothing here needs that Service.
"$KUBE_BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
	--bind-address 127.0.0.1 \
	--advertise-address 127.0.0.1 \
	--secure-port "$API_PORT" \
	--cert-dir "$WORK/certs" \
	--service-cluster-ip-range 10.96.0.0/24 \
	--service-account-issuer https://kubernetes.default.svc \
	--service-account-key-file "$WORK/sa.pub" \
	--service-account-signing-key-file "$WORK/sa.key" \
	--token-auth-file "$WORK/tokens.csv" \
	--authorization-mode RBAC \
	--endpoint-reconciler-type none \
	>"$WORK/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

kubectl() {
	KUBECONFIG="$WORK/no-kubeconfig" "$KUBE_BIN/kubectl" \
		--server "https://127.0.0.1:$API_PORT" --insecure-skip-tls-verify --token "$TOKEN" \
		--request-timeout 10s "$@"
}

deadline=$((SECONDS + STARTUP_SECONDS))
until [[ "$(kubectl get --raw /readyz 2>/dev/null)" == ok ]]; do
	kill -0 "$APISERVER_PID" 2>/dev/null || fail "kube-apiserver exited during startup"
	((SECONDS < deadline)) || fail "kube-apiserver was not ready after ${STARTUP_SECONDS}s ($(kubectl get --raw '/readyz?verbose' 2>&1 | grep -v '^\[+\]' | tr '\n' ' '))"
	sleep 1
done
log "kube-apiserver is ready after ${SECONDS}s in all"

log "kubectl version"
kubectl version || fail "kubectl version"
log "kubectl get ns"
namespaces=$(kubectl get ns) || fail "kubectl get ns"
echo "$namespaces"
for ns in default kube-system kube-public kube-node-lease; do
	grep -q "^$ns " <<<"$namespaces" || fail "namespace $ns is missing from kubectl get ns"
done
if KUBECONFIG="$WORK/no-kubeconfig" "$KUBE_BIN/kubectl" --server "https://127.0.0.1:$API_PORT" \
	--insecure-skip-tls-verify --token wrong-token --request-timeout 10s get ns >/dev/null 2>&1; then
	fail "a wrong token was accepted"
fi
log "a wrong token is refused"
log "OK"
