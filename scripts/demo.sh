#!/usr/bin/env bash
# Brings up the embedded default: the lab of examples/gateway-connected (two clusters on ONE
# pod CIDR, each with its own control plane and east-west gateway, in network namespaces)
# and runs scenario S1 (seed 000) in it, printing each step and its result. The lab stays up
# afterwards: `target/debug/isthmus lab status`, `... lab exec cluster1 foo sleep -- curl -s
# httpbin.bar.global:8000/headers`, and `... lab down` when done. Needs root.
#
#   scripts/demo.sh                 # clusters read from the lab's registry folders
#   scripts/demo.sh --kubernetes    # every cluster on a real Kubernetes control plane (etcd,
#                                   # kube-apiserver, kube-controller-manager, kube-scheduler,
#                                   # built from their Go modules by scripts/install-kubernetes.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=()
case "${1:-}" in
  "") ;;
  --kubernetes) mode=(--kubernetes) ;;
  *) echo "usage: $0 [--kubernetes]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "the lab creates network namespaces and iptables rules: run this as root (sudo $0)" >&2
  exit 1
fi
scripts/install-system.sh
scripts/install-envoy.sh
if [ ${#mode[@]} -gt 0 ]; then
  scripts/install-kubernetes.sh
  scripts/install-istio-crds.sh
fi
cargo build --quiet --bin isthmus
# --replace: the demo takes the place of the lab it left up last time (a lab running in the
# default state folder); without it `lab up` refuses to touch a running lab.
target/debug/isthmus lab up --replace "${mode[@]}" examples/gateway-connected
target/debug/isthmus lab status
target/debug/isthmus lab run "${mode[@]}" examples/gateway-connected/s1.yaml
echo
echo "the lab is still up: target/debug/isthmus lab status | exec | down"
if [ ${#mode[@]} -gt 0 ]; then
  echo "and its API servers: target/debug/isthmus lab kubectl cluster1 -- get pods -A"
fi
