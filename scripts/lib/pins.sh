# shellcheck shell=bash
# Shared by the scripts that build or fetch from pinned Go modules (install-kubernetes.sh,
# install-istio-crds.sh). Source it after setting PROG to the script's name.

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}
log() { echo "$PROG: $*" >&2; }

for tool in awk sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing (it is part of coreutils/awk; install it with apt-get)"
done

# pinned MODULE GOMOD: the version GOMOD requires MODULE at (read from the file
# alone, so a machine that already has what it pins needs no network to say so).
pinned() {
	awk -v m="$1" '($1 == "require" && $2 == m) { print $3; exit } ($1 == m && $2 ~ /^v/) { print $2; exit }' "$2"
}
