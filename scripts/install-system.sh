#!/usr/bin/env bash
# Installs the system tools the lab and its tests use (iproute2, iptables, curl, openssl,
# prometheus, chromium, node) when they
# are missing. Needs root on a fresh Debian machine; does nothing when all are present.
set -euo pipefail
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v curl >/dev/null || missing+=(curl)
# The S4 gateway TLS scenario makes its test certificates with openssl.
command -v openssl >/dev/null || missing+=(openssl)
command -v setpriv >/dev/null || missing+=(util-linux)
# The Kubernetes-mode lab starts its node agents with nsenter (util-linux).
command -v nsenter >/dev/null || missing+=(util-linux)
# The workload metrics scenario scrapes every proxy with a real Prometheus (Debian's).
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
# The mesh page's browser test: Debian's Chromium, driven from Node.js (scripts/install-web-test.sh).
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: run as root, or apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
