#!/usr/bin/env bash
# Copies the real CustomResourceDefinitions of the Istio API out of the pinned
# istio.io/istio Go module (tools/istio/go.mod; the module proxy serves it, no
# other download) into the git-ignored .kube-bin/istio-<version>/crd-all.gen.yaml.
# The file is manifests/charts/base/files/crd-all.gen.yaml, which Istio's base
# Helm chart installs as is; `kubectl apply -f` takes it unchanged.
#
# The pin lives only in tools/istio/go.mod and go.sum. The folder's STAMP
# records the version and a hash of both files and of the copy; when the stamp
# matches, nothing is fetched (no network needed). It prints the file on its
# last line, so `CRDS=$(scripts/install-istio-crds.sh | tail -n1)` works.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ISTIO_MOD="$ROOT/tools/istio"
BIN_ROOT="${KUBE_BIN_ROOT:-$ROOT/.kube-bin}"
CRD_PATH=manifests/charts/base/files/crd-all.gen.yaml

PROG=install-istio-crds
# shellcheck source=scripts/lib/pins.sh
. "$ROOT/scripts/lib/pins.sh"

[[ -f "$ISTIO_MOD/go.mod" && -f "$ISTIO_MOD/go.sum" ]] || die "tools/istio/go.mod or tools/istio/go.sum is missing"
# Read from the file alone, so a machine that has the copy needs neither Go nor network.
VERSION=$(pinned istio.io/istio "$ISTIO_MOD/go.mod")
[[ -n "$VERSION" ]] || die "tools/istio/go.mod does not require istio.io/istio"

OUT="$BIN_ROOT/istio-$VERSION"
CRDS="$OUT/crd-all.gen.yaml"
STAMP="$OUT/STAMP"
want_stamp() {
	echo "istio.io/istio $VERSION $CRD_PATH"
	(cd "$ROOT" && sha256sum tools/istio/go.mod tools/istio/go.sum)
	(cd "$OUT" && sha256sum crd-all.gen.yaml)
}
summary() {
	# The Isthmus chart installs the same CRDs (its templates read files/; git-ignored).
	local chart="$ROOT/manifests/charts/isthmus/files"
	if [[ -d "$chart" ]] && ! cmp -s "$CRDS" "$chart/crd-all.gen.yaml"; then
		cp "$CRDS" "$chart/crd-all.gen.yaml"
		log "copied them into ${chart#"$ROOT"/}/ for the Isthmus chart"
	fi
	log "$(grep -c '^kind: CustomResourceDefinition' "$CRDS") CRDs from istio.io/istio@$VERSION $CRD_PATH:"
	awk '/^kind: CustomResourceDefinition/ { c = 1 } c && /^  name: / { print "  " $2; c = 0 }' "$CRDS" >&2
	echo "$CRDS"
}

mkdir -p "$BIN_ROOT"
if command -v flock >/dev/null 2>&1; then
	exec 9>"$BIN_ROOT/.lock-istio"
	flock 9
fi

if [[ -f "$CRDS" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(want_stamp)" ]]; then
	log "up to date: $CRDS is istio.io/istio@$VERSION's (stamp matches), nothing to do"
	summary
	exit 0
fi

command -v go >/dev/null 2>&1 ||
	die "the 'go' command is missing: it fetches istio.io/istio@$VERSION from the Go module proxy"
log "fetching istio.io/istio@$VERSION from the Go module proxy ($(go env GOPROXY))"
# In tools/istio, so the download is checked against its go.sum.
json=$(cd "$ISTIO_MOD" && go mod download -json "istio.io/istio@$VERSION") ||
	die "could not fetch istio.io/istio@$VERSION from the Go module proxy ($(go env GOPROXY)): is the network up? Go said: $(sed -nE 's/^[[:space:]]*"Error": "(.*)",?$/\1/p' <<<"$json")"
dir=$(awk -F'"' '$2 == "Dir" { print $4; exit }' <<<"$json")
[[ -n "$dir" && -d "$dir" ]] || die "go mod download gave no module folder for istio.io/istio@$VERSION"
if [[ ! -f "$dir/$CRD_PATH" ]]; then
	log "what istio.io/istio@$VERSION has under manifests/charts/base:"
	(cd "$dir" && find manifests/charts/base -maxdepth 2 -name '*.yaml' | sort | sed 's/^/  /' >&2) || true
	die "istio.io/istio@$VERSION has no $CRD_PATH (in $dir): the file moved in this version; update CRD_PATH in ${BASH_SOURCE[0]}"
fi
grep -q '^kind: CustomResourceDefinition' "$dir/$CRD_PATH" ||
	die "$dir/$CRD_PATH holds no CustomResourceDefinition"

rm -f "$STAMP"
mkdir -p "$OUT"
cp "$dir/$CRD_PATH" "$CRDS.tmp"
chmod 644 "$CRDS.tmp" # the module cache is read-only
mv -f "$CRDS.tmp" "$CRDS"
want_stamp >"$STAMP"
log "copied $CRD_PATH of istio.io/istio@$VERSION to $CRDS"
summary
