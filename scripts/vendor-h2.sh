#!/usr/bin/env bash
# Rebuilds third_party/h2: h2 as published on crates.io, with third_party/h2.patch applied.
# `--check` rebuilds it aside and fails if the committed tree differs, or if Cargo.lock left
# the patch unused (CI runs it).
#
# Why: h2 keeps a 16 KB write buffer, a read buffer as large as the largest frame read and a
# 4 KB HPACK scratch buffer for every connection, for the connection's whole life, with no
# setting to change it. An xDS server holds one connection per proxy, almost always idle.
# The patch gives the write buffer back once a flush has written everything, the read buffer
# back while waiting for the peer, and takes the HPACK buffer when first needed (see
# docs/BENCHMARKS.md, "An idle connection gives its HTTP/2 buffers back"). It also gives back
# the room of a frame queue (received or to send: one slab per connection) once it is empty:
# a client connection to an API server
# otherwise keeps the slots of the most frames a large list ever left queued (about 100 KB
# per cluster read; docs/BENCHMARKS.md, "A remote cluster read for what the mesh takes").
#
# The workspace uses the result through `[patch.crates-io]` in Cargo.toml, and pins h2 to
# VERSION. To move to a new h2 release: update VERSION and SHA256 (the release's `checksum`
# in a Cargo.lock that uses it) here and the pin in Cargo.toml, rebase the patch, run this,
# then build and run the tests (crates/xds/tests/idle_connection.rs measures the patch).
set -euo pipefail

VERSION=0.4.20
SHA256=7d29020232d6aa3fb1daca64c1127cf662cf97f254ae16c18c05b8ab635fc118

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
for tool in curl sha256sum tar patch diff; do
  command -v "$tool" >/dev/null || { echo "error: $0 needs $tool" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The crate as cargo downloaded it, when it did; from crates.io otherwise.
cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/h2-"$VERSION".crate 2>/dev/null | head -1 || true)
if [ -n "$cached" ]; then
  cp "$cached" "$work/h2.crate"
else
  echo "downloading h2 $VERSION from crates.io"
  curl -sSfL -o "$work/h2.crate" "https://static.crates.io/crates/h2/h2-$VERSION.crate"
fi
echo "$SHA256  $work/h2.crate" | sha256sum --check --quiet \
  || { echo "error: h2-$VERSION.crate does not have the checksum crates.io lists" >&2; exit 1; }
tar xzf "$work/h2.crate" -C "$work"
# The crate's own lock file means nothing to a path dependency (and h2's .gitignore hides it).
rm -f "$work/h2-$VERSION/Cargo.lock"
(cd "$work/h2-$VERSION" && patch -p1 --fuzz=0 --quiet --no-backup-if-mismatch < "$root/third_party/h2.patch") \
  || { echo "error: third_party/h2.patch does not apply exactly to h2 $VERSION" >&2; exit 1; }

if $check; then
  if ! diff -r --exclude=Cargo.lock "$work/h2-$VERSION" "$root/third_party/h2" >"$work/diff"; then
    echo "error: third_party/h2 is not h2 $VERSION with third_party/h2.patch (edit the patch, then run $0):" >&2
    head -40 "$work/diff" >&2
    exit 1
  fi
  if grep -q '^\[\[patch.unused\]\]' "$root/Cargo.lock"; then
    echo "error: Cargo.lock leaves the h2 patch unused (h2 must stay at $VERSION)" >&2
    exit 1
  fi
  echo "third_party/h2 is h2 $VERSION with third_party/h2.patch, and Cargo.lock uses it"
  exit 0
fi
rm -rf "$root/third_party/h2"
mv "$work/h2-$VERSION" "$root/third_party/h2"
echo "third_party/h2 is h2 $VERSION with third_party/h2.patch"
