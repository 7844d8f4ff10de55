#!/usr/bin/env bash
# Regenerates crates/cli/symbol-order.txt: the functions the control plane runs, which the
# release build lays out first in the binary's text (crates/cli/build.rs passes the list to
# LLD). The kernel maps code into a process in blocks around each page that runs, so the
# fewer blocks the running functions are spread over, the less of the 32 MB of text is
# resident (docs/BENCHMARKS.md, "The code the control plane runs, laid out together").
#
# How the list is found, with the release binary and the benchmarks users run:
#   1. every function the control plane runs in small runs of `bench xds` (files, state of
#      the world and delta, with endpoint churn), `bench xds --peer istiod` (its Kubernetes
#      source reading a real API server) and `bench memory --peer istiod` (remote clusters
#      read from it), under valgrind's callgrind, which names every function that ran;
#   2. the binary linked with that list, then the same benchmarks at 1,000 proxies under
#      `perf record -e page-faults`: the functions that still fault outside the list (paths
#      that only a large run takes) are added.
# Takes about 15 minutes on two cores; needs root (the API server, istiod), valgrind and perf
# (installed here from Debian when missing), and the Kubernetes and istiod binaries (the
# repository's install scripts build them).
#
# `--check`: builds the release binary and says how many of the listed functions it still
# has and where they lie; fails if they do not lead the text (the list was not applied).
# Fails when fewer than 80% of the listed functions are in the build: the list is stale
# (functions renamed or moved, a dependency updated, the release profile changed, another
# toolchain: names carry their hashes) and should be made again. A stale list lays out less,
# never breaks a build.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
root=$PWD
list=crates/cli/symbol-order.txt
# Built and read here, wherever the caller's Cargo would put its targets.
export CARGO_TARGET_DIR=$root/target
exe=$root/target/release/isthmus

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

need() {
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $2 (for $1)"
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  else
    echo "error: $0 needs $1 (Debian package $2)" >&2
    exit 1
  fi
}
need nm binutils
need python3 python3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {
  echo "building the release binary${1:+ ($1)}"
  cargo build --release -p isthmus --quiet
}

# The listed names the binary defines, and the span of text they take from its start.
report() {
  nm --defined-only "$exe" > "$work/nm.txt"
  python3 - "$list" "$work/nm.txt" <<'EOF'
import sys
listed = [l.strip() for l in open(sys.argv[1]) if l.strip()]
addr, size = {}, {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        addr.setdefault(parts[2], int(parts[0], 16))
text = sorted(addr.values())
found = [n for n in listed if n in addr]
if not found:
    sys.exit("error: no listed function is in this build")
start = text[0]
ends = sorted(addr[n] for n in found)
# The 99th percentile: a few names are in sections of their own (_init) and lie elsewhere.
span = ends[len(ends) * 99 // 100] - start
total = text[-1] - start
print(f"{len(found)} of {len(listed)} listed functions are in this build; "
      f"99% of them lie in the first {span / 1e6:.1f} MB of {total / 1e6:.1f} MB of text")
if span > total / 2:
    sys.exit("error: the listed functions do not lead the text: the list was not applied "
             "(see crates/cli/build_support/link_order.rs for when LLD is given it)")
if len(found) < 0.8 * len(listed):
    sys.exit("error: the list is stale: make it again with scripts/symbol-order.sh")
EOF
}

if $check; then
  build
  report
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "error: $0 needs root (the benchmarks start an API server and istiod)" >&2
  exit 1
fi
need valgrind valgrind
need perf linux-perf
scripts/install-kubernetes.sh
scripts/install-istio-crds.sh
scripts/install-istiod.sh

# The benchmarks each pass runs, the control plane under "$ISTHMUS_BENCH_CP_WRAPPER" (which
# also gives it glibc's thread-cache tunable, so that callgrind, which does not follow an
# exec, sees the process that serves rather than one that starts itself again); each
# logs to $work/<name>.log, and the first that fails stops the script with its log's end.
bench() {
  local name=$1
  shift
  if ! "$exe" bench "$@" > "$work/$name.log" 2>&1; then
    echo "error: bench $* failed:" >&2
    tail -20 "$work/$name.log" >&2
    exit 1
  fi
}
runs() {
  local proxies=$1 churn=$2 changes=$3 services=$4
  bench files-sotw xds --services 1000 --endpoints 10 --clusters 2 --proxies "$proxies" \
    --churn-seconds "$churn" --work "$work/files"
  bench files-delta xds --services 1000 --endpoints 10 --clusters 2 --proxies "$proxies" \
    --delta --churn-seconds "$churn" --work "$work/files"
  bench peer xds --peer istiod --services "$services" --endpoints 10 --proxies "$proxies" \
    --modes sotw,delta --changes "$changes" --work "$work/peer"
  # Remote clusters read from the API server (credential Secrets, a reader per cluster).
  bench memory memory --peer istiod --services 100 --endpoints 10 --clusters 1,3 --repeat 1 \
    --work "$work/memory"
}

# Pass 1 runs the binary as the compiler and linker lay it out without a list: the list keeps
# the functions that run in that order (a compilation unit's functions stay together).
ISTHMUS_SYMBOL_ORDER=off build "without the list"
echo "pass 1: the functions that run, under callgrind (about 5 minutes)"
mkdir -p "$work/cg"
export ISTHMUS_BENCH_CP_WRAPPER="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$work/cg/out.%p"
runs 50 3 3 300
nm --defined-only "$exe" > "$work/nm.txt"
python3 - "$work/cg" "$work/nm.txt" "$work/pass1.txt" <<'EOF'
import os, re, sys
defined = {}
for line in open(sys.argv[2]):
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        defined.setdefault(parts[2], int(parts[0], 16))
ran = set()
for name in os.listdir(sys.argv[1]):
    for line in open(os.path.join(sys.argv[1], name), errors="replace"):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line)
        if m and m.group(1).strip() in defined:
            ran.add(m.group(1).strip())
if not ran:
    sys.exit("error: callgrind named no function of the binary")
open(sys.argv[3], "w").write("".join(n + "\n" for n in sorted(ran, key=lambda n: defined[n])))
print(f"{len(ran)} functions ran")
EOF
cp "$work/pass1.txt" "$list"

build "with the functions that ran first"
echo "pass 2: what still faults outside the list at 1,000 proxies (about 6 minutes)"
mkdir -p "$work/pf"
cat > "$work/perf-wrap" <<EOF
#!/bin/sh
exec perf record -e page-faults -c 1 -q -o "$work/pf/\$\$.data" -- "\$@"
EOF
chmod +x "$work/perf-wrap"
export ISTHMUS_BENCH_CP_WRAPPER="$work/perf-wrap"
runs 1000 5 10 1000
unset ISTHMUS_BENCH_CP_WRAPPER
data=("$work"/pf/*.data)
[ -e "${data[0]}" ] || { echo "error: perf recorded nothing" >&2; exit 1; }
for f in "${data[@]}"; do
  perf script -i "$f" -F ip,sym,dso --no-demangle > "$work/pf.txt" \
    || { echo "error: perf script cannot read $f" >&2; exit 1; }
  grep -F "$exe" "$work/pf.txt" || true
done | awk '{ split($2, s, "+"); print s[1] }' | grep -v -e '^\[unknown\]$' -e '^_init$' \
  | sort -u > "$work/pass2.txt"
# Pass 1's functions in its order, then what pass 2 adds (by name: they are few).
sort -u "$work/pass1.txt" > "$work/pass1.sorted"
comm -13 "$work/pass1.sorted" "$work/pass2.txt" > "$work/added.txt"
cat "$work/pass1.txt" "$work/added.txt" > "$list"
echo "$(wc -l < "$work/added.txt") functions added by pass 2"

build "with the final list"
report
echo "wrote $list"
