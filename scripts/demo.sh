#!/usr/bin/env bash
# Brings up the embedded default: seed 000 (gateway-connected clusters) across two control
# planes and three real Envoys on loopback, printing each step and its result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-envoy.sh
cargo build --quiet --bin isthmus
cargo test --quiet -p isthmus --test seed000_loopback_envoy -- --nocapture
