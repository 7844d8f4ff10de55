#!/usr/bin/env bash
# Makes room for a CI run on a machine that keeps its checkout between runs. Cargo never
# deletes old artifacts: every run adds new hashes under target/ and fuzz/target/, so a
# reused checkout grows until the disk is full (one CI run failed with "No space left on
# device" while compiling rustls, before any test ran). This prints what the disk holds and,
# when less than NEED_GB (default 30) is free, removes build output that the run rebuilds
# anyway, largest-to-least useful, until there is room:
#   1. incremental compilation caches (CI builds with CARGO_INCREMENTAL=0),
#   2. the fuzz build (fuzz/target), the release build (target/release),
#   3. the whole cargo target directory, 4. Go's build cache (the Kubernetes and Istio
#      binaries stay in .kube-bin; only a version change rebuilds them).
# It fails, showing what uses the space, only when less than MIN_GB (default 12) is left.
#   scripts/ci-disk.sh [NEED_GB [MIN_GB]]
set -euo pipefail
cd "$(dirname "$0")/.."
need_gb=${1:-30}
min_gb=${2:-12}

free_gb() { df -Pk . | awk 'NR == 2 { print int($4 / 1024 / 1024) }'; }
show() {
  df -h . | sed 's/^/ci-disk: /'
  du -sh target fuzz/target .kube-bin .venv "$(go env GOCACHE 2>/dev/null || echo /nonexistent)" 2>/dev/null \
    | sed 's/^/ci-disk:   /' || true
}

show
step() {
  local what=$1
  shift
  if [ "$(free_gb)" -ge "$need_gb" ]; then
    return 0
  fi
  echo "ci-disk: $(free_gb) GB free, need $need_gb: removing $what" >&2
  "$@" || true
}
step "incremental caches" rm -rf target/debug/incremental target/release/incremental
step "the fuzz build" rm -rf fuzz/target
step "the release build" rm -rf target/release
step "the cargo target directory" rm -rf target
step "Go's build cache" go clean -cache
if [ "$(free_gb)" -lt "$min_gb" ]; then
  echo "ci-disk: only $(free_gb) GB free after removing build output; CI needs at least $min_gb GB (debug and release builds, fuzz build, Kubernetes build). Largest folders:" >&2
  du -xh --max-depth=2 / 2>/dev/null | sort -rh | head -n 15 >&2 || true
  exit 1
fi
echo "ci-disk: $(free_gb) GB free"
