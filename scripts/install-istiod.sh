#!/usr/bin/env bash
# Builds istiod (istio.io/istio's pilot/cmd/pilot-discovery), the peer Isthmus is measured
# against, from the Go module pinned in tools/istiod/go.mod, with no prebuilt binary
# downloaded, into the git-ignored .kube-bin/istiod-<version>/pilot-discovery.
#
# The pin lives only in tools/istiod/go.mod and go.sum. The folder's STAMP records the
# version and a hash of both; when the binary is there and the stamp matches, nothing is
# built (no network needed). It prints the binary on its last line, so
# `ISTIOD=$(scripts/install-istiod.sh | tail -n1)` works.
#
# Needs Go 1.26 or newer and the Go module proxy. The first build downloads Istio's
# dependencies and compiles a few thousand packages: a long while on two cores (run it
# under `nice` on a shared machine). Go's caches stay where Go keeps them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD="$ROOT/tools/istiod"
BIN_ROOT="${KUBE_BIN_ROOT:-$ROOT/.kube-bin}"
PKG=istio.io/istio/pilot/cmd/pilot-discovery
MIN_GO_MINOR=26

PROG=install-istiod
# shellcheck source=scripts/lib/pins.sh
. "$ROOT/scripts/lib/pins.sh"

[[ -f "$MOD/go.mod" ]] || die "tools/istiod/go.mod is missing"
VERSION=$(pinned istio.io/istio "$MOD/go.mod")
[[ -n "$VERSION" ]] || die "tools/istiod/go.mod does not require istio.io/istio"
OUT="$BIN_ROOT/istiod-$VERSION"
BIN="$OUT/pilot-discovery"
STAMP="$OUT/STAMP"
want_stamp() {
	echo "istio.io/istio $VERSION"
	(cd "$ROOT" && sha256sum tools/istiod/go.mod tools/istiod/go.sum)
}

mkdir -p "$BIN_ROOT"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$BIN_ROOT/.lock-istiod"
	flock 9
fi
if [[ -x "$BIN" && -f "$STAMP" && -f "$MOD/go.sum" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
	log "up to date: istiod $VERSION is already built (stamp matches), nothing to do"
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null 2>&1 ||
	die "the 'go' command is missing: Go 1.$MIN_GO_MINOR or newer is needed to build istiod from the Go module proxy"
go_version=$(go env GOVERSION 2>/dev/null) || die "'go env GOVERSION' failed: is the Go installation broken?"
go_minor=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$go_version")
[[ -n "$go_minor" && "$go_minor" -ge "$MIN_GO_MINOR" ]] ||
	die "Go 1.$MIN_GO_MINOR or newer is needed, found '$go_version'"
[[ -f "$MOD/go.sum" ]] ||
	die "tools/istiod/go.sum is missing: run 'go get $PKG@$VERSION' in tools/istiod"

log "fetching modules from the Go module proxy ($(go env GOPROXY))"
(cd "$MOD" && go mod download) ||
	die "could not fetch the modules of tools/istiod from the Go module proxy ($(go env GOPROXY)): is the network up?"
export CGO_ENABLED=0
rm -f "$STAMP"
mkdir -p "$OUT"
start=$(date +%s)
log "building istiod ($PKG $VERSION) with $go_version into $OUT ..."
(cd "$MOD" && go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" "$PKG") ||
	die "building istiod failed; see the go output above"
mv -f "$BIN.tmp" "$BIN"
want_stamp >"$STAMP"
log "built istiod in $(($(date +%s) - start))s ($(du -h "$BIN" | cut -f1))"
echo "$BIN"
