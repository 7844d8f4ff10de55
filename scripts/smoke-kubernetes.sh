#!/usr/bin/env bash
# Smoke test of the control plane that scripts/install-kubernetes.sh builds:
# starts etcd and kube-apiserver on 127.0.0.1 (free ports, a temporary folder),
# asks the API server for its version and its namespaces with kubectl and a
# static token. Then it installs Istio's own CRDs (scripts/install-istio-crds.sh,
# from the pinned istio.io/istio module), applies seed YAML from examples/*/seed
# as it is (placeholders filled, nothing else changed), reads every object back
# under v1alpha3, v1beta1 and v1, and checks that VirtualServices with schema
# errors are refused by the API server with its own message and not stored.
# It stops both servers and removes the folder, also when a step fails.
# Exits non-zero with the failing step named (and the logs' last lines).
#
#   scripts/smoke-kubernetes.sh            # builds first if needed (see install-kubernetes.sh)
#   KUBE_BIN=DIR ISTIO_CRDS=FILE scripts/smoke-kubernetes.sh
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
if [[ -z "${ISTIO_CRDS:-}" ]]; then
	ISTIO_CRDS=$("$ROOT/scripts/install-istio-crds.sh" | tail -n1) || fail "scripts/install-istio-crds.sh failed"
fi
[[ -f "$ISTIO_CRDS" ]] || fail "$ISTIO_CRDS is missing: run scripts/install-istio-crds.sh"

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
		--request-timeout 10s --cache-dir "$WORK/kubectl-cache" "$@"
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

# --- Istio's CRDs ---------------------------------------------------------------
log "kubectl apply -f $ISTIO_CRDS"
kubectl apply -f "$ISTIO_CRDS" || fail "kubectl apply of Istio's CRDs"
kubectl wait --for condition=established --timeout 60s -f "$ISTIO_CRDS" ||
	fail "Istio's CRDs were not Established within 60s"
for crd in virtualservices destinationrules serviceentries gateways; do
	got=$(kubectl get crd "$crd.networking.istio.io" -o jsonpath='{range .spec.versions[?(@.served==true)]}{.name} {end}/ {.status.storedVersions}') ||
		fail "kubectl get crd $crd.networking.istio.io"
	[[ "$got" == 'v1alpha3 v1beta1 v1 / ["v1"]' || "$got" == 'v1 v1alpha3 v1beta1 / ["v1"]' ]] ||
		fail "$crd.networking.istio.io serves/stores '$got', not v1alpha3, v1beta1 and v1 / v1"
done
log "Istio's CRDs are Established; networking.istio.io serves v1alpha3, v1beta1 and v1 and stores v1"

# --- seed YAML, as the examples have it -------------------------------------------
# Placeholders (${NAME} and seed 002's <NAME>, see crates/lab/src/manifests.rs)
# get documentation addresses (RFC 5737); nothing else in the files changes.
# replicated-services/seed/mtls.yaml is applied on its own below.
mkdir -p "$WORK/seed"
seeds=(
	seed:remote-suffix/seed/cluster-a.yaml
	seed:gateway-connected/seed/httpbin-bar.yaml
	seed:replicated-services/seed/remote-endpoint-for-bar-in-cluster1.yaml
	seed-egress:gateway-connected/seed/httpbin-bar-egress.yaml
	sample:split-horizon/seed/helloworld-gateway.yaml
)
for ns in seed seed-egress sample; do
	kubectl create namespace "$ns" >/dev/null || fail "kubectl create namespace $ns"
done
for entry in "${seeds[@]}"; do
	ns=${entry%%:*} file=${entry#*:}
	copy="$WORK/seed/${file//\//_}"
	sed -E 's/\$\{GATEWAY_IP_[A-Z0-9_]+\}/192.0.2.10/g; s/<IPofCluster[0-9]+IngressGateway>/192.0.2.20/g' "$ROOT/examples/$file" >"$copy"
	if grep -nE '^[^#]*(\$\{|<[A-Za-z]+>)' "$copy" >&2; then fail "examples/$file has a placeholder this test does not fill"; fi
	log "kubectl apply -n $ns -f examples/$file"
	kubectl apply -n "$ns" -f "$copy" || fail "kubectl apply of examples/$file"
done
# Seed 002's mtls.yaml: its DestinationRule is stored; its MeshPolicy
# (authentication.istio.io/v1alpha1, which Istio no longer defines) has no CRD, as on a
# real Istio cluster of this version.
log "kubectl apply -n seed -f examples/replicated-services/seed/mtls.yaml (the MeshPolicy must be refused)"
if out=$(kubectl apply -n seed -f "$ROOT/examples/replicated-services/seed/mtls.yaml" 2>&1); then
	fail "the MeshPolicy of mtls.yaml was accepted: $out"
fi
echo "$out"
grep -q 'no matches for kind "MeshPolicy"' <<<"$out" || fail "kubectl did not say MeshPolicy is unknown"

# Every object, read back under each served version.
stored=(
	seed/virtualservices/b-virtual-service
	seed/serviceentries/b-ingress
	seed/gateways/ingress-gateway
	seed/serviceentries/httpbin-bar
	seed/serviceentries/remote-endpoint-for-bar-in-cluster1
	seed/destinationrules/default
	seed-egress/serviceentries/httpbin-bar
	sample/gateways/helloworld-gateway
)
for version in v1alpha3 v1beta1 v1; do
	for obj in "${stored[@]}"; do
		IFS=/ read -r ns plural name <<<"$obj"
		got=$(kubectl get --raw "/apis/networking.istio.io/$version/namespaces/$ns/$plural/$name") ||
			fail "GET $plural $ns/$name under networking.istio.io/$version"
		grep -q "\"apiVersion\":\"networking.istio.io/$version\"" <<<"$got" ||
			fail "$plural $ns/$name did not come back as networking.istio.io/$version: $got"
	done
	log "all ${#stored[@]} seed objects are served under networking.istio.io/$version"
done
weight=$(kubectl get virtualservices.v1.networking.istio.io -n seed b-virtual-service -o jsonpath='{.spec.http[0].route[0].weight}') ||
	fail "kubectl get of b-virtual-service under v1"
[[ "$weight" == 100 ]] || fail "b-virtual-service's weight read back as '$weight' under v1, not 100"
kinds=virtualservices.v1beta1.networking.istio.io,serviceentries.v1alpha3.networking.istio.io,destinationrules.v1.networking.istio.io,gateways.v1.networking.istio.io
log "kubectl get $kinds -A"
kubectl get "$kinds" -A ||
	fail "kubectl get of the seed objects"

# --- objects the API server must refuse -------------------------------------------
# expect_rejected NAME PATTERN APPLY-FLAGS...: applying $WORK/bad/NAME.yaml fails,
# kubectl prints the API server's message (matching PATTERN), nothing is stored.
mkdir -p "$WORK/bad"
expect_rejected() {
	local name=$1 pattern=$2 out
	shift 2
	log "kubectl apply $* -f $name.yaml (must be refused)"
	if out=$(kubectl apply "$@" -f "$WORK/bad/$name.yaml" 2>&1); then
		fail "the API server accepted VirtualService $name: $out"
	fi
	echo "$out"
	grep -qE -- "$pattern" <<<"$out" || fail "kubectl's message for VirtualService $name does not match '$pattern'"
	out=$(kubectl get virtualservices.networking.istio.io -n seed "$name" 2>&1) &&
		fail "VirtualService $name was stored although refused"
	grep -q NotFound <<<"$out" || fail "kubectl get of the refused VirtualService $name: $out"
}
bad_vs() { # bad_vs NAME ROUTE-LINE TIMEOUT-LINE EXTRA-LINE
	printf '%s\n' "apiVersion: networking.istio.io/v1" "kind: VirtualService" "metadata:" \
		"  name: $1" "  namespace: seed" "spec:" "  hosts: [reviews.seed.svc.cluster.local]" "  http:" \
		"  - route:" "    - destination: {host: reviews.seed.svc.cluster.local}" "      weight: $2" \
		"    timeout: $3" "$4" >"$WORK/bad/$1.yaml"
}
# A type error from the CRD's OpenAPI schema (weight is an int32); --validate=false
# so that kubectl checks nothing itself.
bad_vs bad-weight heavy 5s ""
expect_rejected bad-weight 'spec\.http\[0\]\.route\[0\]\.weight.*must be of type integer' --validate=false
# A CEL rule of the CRD (x-kubernetes-validations on HTTPRoute.timeout).
bad_vs bad-timeout 100 0s ""
expect_rejected bad-timeout 'spec\.http\[0\]\.timeout.*must be a valid duration greater than 1ms' --validate=false
# A field the schema does not have: pruned silently unless the field validation
# is Strict, which --validate=strict asks the API server for.
bad_vs bad-field 100 5s "  htpp: []"
expect_rejected bad-field 'unknown field "spec\.htpp"' --validate=strict
log "the API server refused all three bad VirtualServices with its own messages and stored none"
log "OK"
