#!/usr/bin/env bash
# The whole test suite: unit, golden and end-to-end (real Envoy, real mTLS; needs root), in
# file mode and on real Kubernetes: the Kubernetes source against a real kube-apiserver, and
# S1 (all variants), S3 and multi-primary, with sidecar injection, every lab cluster on its own etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler (built from the pinned Go modules, with Istio's
# own CRDs from the pinned istio.io/istio module); then the smoke test of that control plane
# with the examples' seed YAML.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "warning: the end-to-end tests need root (port 80, network namespaces, iptables); they will fail saying so" >&2
else
  scripts/install-system.sh
  scripts/install-web-test.sh
fi
scripts/install-envoy.sh
scripts/install-kubernetes.sh
scripts/install-istio-crds.sh
scripts/install-helm.sh
scripts/install-istiod.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# Every test binary runs even after one fails, so a red run names every failure.
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p+0, f+0 }' "$log")
echo
if scripts/smoke-kubernetes.sh; then
  kube=passed
else
  kube=failed
  status=1
fi
echo
echo "real Kubernetes (etcd + kube-apiserver + kubectl on loopback, Istio CRDs): $kube"
echo "all: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
