#!/usr/bin/env bash
# Builds a Kubernetes control plane from published Go modules, with no prebuilt
# binary downloaded:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#       from k8s.io/kubernetes, pinned in tools/kubernetes/go.mod
#   etcd
#       from go.etcd.io/etcd/server/v3, pinned in tools/etcd/go.mod
# into the git-ignored .kube-bin/<kubernetes version>-<etcd version>/.
#
# The pins live only in those go.mod/go.sum files. The folder's STAMP records
# the versions and a hash of the four files; when every binary is there and
# the stamp matches, the script builds nothing. It prints the folder on its
# last line, so `BIN=$(scripts/install-kubernetes.sh | tail -n1)` works.
#
# Needs Go 1.26 or newer and the Go module proxy (GOPROXY as the go command has
# it). The first build compiles ~3,000 packages and takes a long while on two
# cores; Go's build and module caches stay where Go keeps them, so a rebuild
# after a pin change reuses what did not change. Run it under `nice` on a
# shared machine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_MOD="$ROOT/tools/kubernetes"
ETCD_MOD="$ROOT/tools/etcd"
BIN_ROOT="${KUBE_BIN_ROOT:-$ROOT/.kube-bin}"
K8S_TOOLS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
MIN_GO_MINOR=26

PROG=install-kubernetes
# shellcheck source=scripts/lib/pins.sh
. "$ROOT/scripts/lib/pins.sh"

command -v go >/dev/null 2>&1 ||
	die "the 'go' command is missing: Go 1.$MIN_GO_MINOR or newer is needed to build Kubernetes and etcd from the Go module proxy"
go_version=$(go env GOVERSION 2>/dev/null) || die "'go env GOVERSION' failed: is the Go installation broken?"
go_minor=$(sed -nE 's/^go1\.([0-9]+).*/\1/p' <<<"$go_version")
[[ -n "$go_minor" && "$go_minor" -ge "$MIN_GO_MINOR" ]] ||
	die "Go 1.$MIN_GO_MINOR or newer is needed, found '$go_version'"

[[ -f "$K8S_MOD/go.mod" && -f "$ETCD_MOD/go.mod" ]] || die "tools/kubernetes/go.mod or tools/etcd/go.mod is missing"
K8S_VERSION=$(pinned k8s.io/kubernetes "$K8S_MOD/go.mod")
ETCD_VERSION=$(pinned go.etcd.io/etcd/server/v3 "$ETCD_MOD/go.mod")
[[ -n "$K8S_VERSION" ]] || die "tools/kubernetes/go.mod does not require k8s.io/kubernetes"
[[ -n "$ETCD_VERSION" ]] || die "tools/etcd/go.mod does not require go.etcd.io/etcd/server/v3"

OUT="$BIN_ROOT/$K8S_VERSION-$ETCD_VERSION"
STAMP="$OUT/STAMP"
want_stamp() {
	echo "k8s.io/kubernetes $K8S_VERSION"
	echo "go.etcd.io/etcd/server/v3 $ETCD_VERSION"
	(cd "$ROOT" && sha256sum tools/kubernetes/go.mod tools/kubernetes/go.sum tools/etcd/go.mod tools/etcd/go.sum)
}

print_result() {
	log "binaries in $OUT:"
	local tool
	for tool in "${K8S_TOOLS[@]}" etcd; do
		echo "  $OUT/$tool" >&2
	done
	log "versions:"
	{
		echo "  kube-apiserver:          $("$OUT/kube-apiserver" --version)"
		echo "  kube-controller-manager: $("$OUT/kube-controller-manager" --version)"
		echo "  kube-scheduler:          $("$OUT/kube-scheduler" --version)"
		echo "  kubectl:                 $("$OUT/kubectl" version --client | tr '\n' ' ')"
		echo "  etcd:                    $("$OUT/etcd" --version | tr '\n' ' ')"
	} >&2
	echo "$OUT"
}

up_to_date() {
	local tool
	for tool in "${K8S_TOOLS[@]}" etcd; do
		[[ -x "$OUT/$tool" ]] || return 1
	done
	[[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(want_stamp)" ]]
}

mkdir -p "$BIN_ROOT"
# One build at a time per checkout.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$BIN_ROOT/.lock"
	flock 9
fi

if up_to_date; then
	log "up to date: k8s.io/kubernetes $K8S_VERSION and etcd $ETCD_VERSION are already built (stamp matches), nothing to do"
	print_result
	exit 0
fi

log "building k8s.io/kubernetes $K8S_VERSION and go.etcd.io/etcd/server/v3 $ETCD_VERSION with $go_version into $OUT"
# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
# with ./staging/src paths that apply only in its own repository: each must be
# replaced here with the published v0.<minor>.<patch> of this release.
# (Checked first: a missing replace would otherwise surface as a fetch error
# for a k8s.io module at v0.0.0.) Asked from outside any module, so that a
# go.mod broken in just that way does not stop the look-up.
log "fetching modules from the Go module proxy ($(go env GOPROXY))"
k8s_gomod=$(cd / && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | awk -F'"' '$2 == "GoMod" { print $4 }') ||
	die "could not fetch k8s.io/kubernetes@$K8S_VERSION from the Go module proxy ($(go env GOPROXY)): is the network up?"
[[ -f "$k8s_gomod" ]] || die "could not find k8s.io/kubernetes@$K8S_VERSION's go.mod in the module cache"
staging_version="v0.${K8S_VERSION#v1.}"
missing=()
while read -r mod; do
	got=$(awk -v m="$mod" '$1 == m && $2 == "=>" { print $3 " " $4; exit } $1 == "replace" && $2 == m && $3 == "=>" { print $4 " " $5; exit }' "$K8S_MOD/go.mod")
	[[ "$got" == "$mod $staging_version" ]] || missing+=("$mod => $mod $staging_version (have: '${got:-none}')")
done < <(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print $1 }' "$k8s_gomod")
if ((${#missing[@]})); then
	printf '  replace %s\n' "${missing[@]}" >&2
	die "tools/kubernetes/go.mod lacks the replace lines above for k8s.io/kubernetes $K8S_VERSION's staging modules"
fi

for mod in "$K8S_MOD" "$ETCD_MOD"; do
	(cd "$mod" && go mod download) ||
		die "could not fetch the modules of ${mod#"$ROOT"/} from the Go module proxy ($(go env GOPROXY)): is the network up?"
done

export CGO_ENABLED=0
rm -f "$STAMP"
mkdir -p "$OUT"
# Version strings as Kubernetes' own build (hack/lib/version.sh) sets them; the
# build date is the release's date from the module proxy, so that a rebuild is
# byte for byte the same.
k8s_date=$(cd "$K8S_MOD" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
k8s_minor=${K8S_VERSION#v1.}
k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.buildDate=$k8s_date"
done

build() { # build NAME MODULE-DIR PACKAGE WHAT LDFLAGS
	local name=$1 dir=$2 pkg=$3 what=$4 ldflags=$5 start
	start=$(date +%s)
	log "building $name ($what) ..."
	(cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$OUT/$name.tmp" "$pkg") ||
		die "building $name ($what) failed; see the go output above"
	mv -f "$OUT/$name.tmp" "$OUT/$name"
	log "built $name in $(($(date +%s) - start))s ($(du -h "$OUT/$name" | cut -f1))"
}

total_start=$(date +%s)
for tool in "${K8S_TOOLS[@]}"; do
	build "$tool" "$K8S_MOD" "k8s.io/kubernetes/cmd/$tool" "k8s.io/kubernetes $K8S_VERSION" "$k8s_ldflags"
done
build etcd "$ETCD_MOD" go.etcd.io/etcd/server/v3 "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "-s -w"
want_stamp >"$STAMP"
log "built everything in $(($(date +%s) - total_start))s"
print_result
