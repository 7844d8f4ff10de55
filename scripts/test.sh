#!/usr/bin/env bash
# The whole test suite: unit, golden and end-to-end (real Envoy, real mTLS; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-envoy.sh
if [ "$(id -u)" != 0 ]; then
  echo "warning: the end-to-end test binds port 80 and needs root; it will fail with a clear message" >&2
fi
cargo test --workspace "$@"
