#!/usr/bin/env bash
# Builds helm from its published Go module (helm.sh/helm/v3, pinned in tools/helm/go.mod),
# with no prebuilt binary downloaded, into the git-ignored .kube-bin/helm-<version>/helm.
# The chart tests run `helm lint`, `helm template` and `helm install` with it.
#
# The folder's STAMP records the version and a hash of tools/helm/go.mod and go.sum; when
# the binary is there and the stamp matches, nothing is built. It prints the binary's path
# on its last line, so `HELM=$(scripts/install-helm.sh | tail -n1)` works.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOD="$ROOT/tools/helm"
BIN_ROOT="${KUBE_BIN_ROOT:-$ROOT/.kube-bin}"
PROG=install-helm
# shellcheck source=scripts/lib/pins.sh
. "$ROOT/scripts/lib/pins.sh"

command -v go >/dev/null 2>&1 || die "the 'go' command is missing: Go 1.26 or newer builds helm from the Go module proxy"
[[ -f "$MOD/go.mod" ]] || die "tools/helm/go.mod is missing"
VERSION=$(pinned helm.sh/helm/v3 "$MOD/go.mod")
[[ -n "$VERSION" ]] || die "tools/helm/go.mod does not require helm.sh/helm/v3"
OUT="$BIN_ROOT/helm-$VERSION"
STAMP="$OUT/STAMP"
want_stamp() {
	echo "helm.sh/helm/v3 $VERSION"
	(cd "$ROOT" && sha256sum tools/helm/go.mod tools/helm/go.sum)
}

mkdir -p "$BIN_ROOT"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$BIN_ROOT/.lock-helm"
	flock 9
fi
if [[ -x "$OUT/helm" && -f "$STAMP" && "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
	log "up to date: helm $VERSION is already built (stamp matches), nothing to do"
	echo "$OUT/helm"
	exit 0
fi

log "fetching helm.sh/helm/v3 $VERSION from the Go module proxy ($(go env GOPROXY))"
(cd "$MOD" && go mod download) ||
	die "could not fetch the modules of tools/helm from the Go module proxy ($(go env GOPROXY)): is the network up?"
export CGO_ENABLED=0
rm -f "$STAMP"
mkdir -p "$OUT"
start=$(date +%s)
log "building helm $VERSION (about a thousand packages; minutes on two cores the first time) ..."
# The version helm reports, as its own Makefile sets it.
(cd "$MOD" && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION" \
	-o "$OUT/helm.tmp" helm.sh/helm/v3/cmd/helm) ||
	die "building helm $VERSION failed; see the go output above"
mv -f "$OUT/helm.tmp" "$OUT/helm"
want_stamp >"$STAMP"
log "built helm in $(($(date +%s) - start))s: $("$OUT/helm" version --short 2>/dev/null || echo '?')"
echo "$OUT/helm"
