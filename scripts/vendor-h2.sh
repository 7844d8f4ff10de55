#!/usr/bin/env bash
# Rebuilds third_party/h2: h2 as published on crates.io, with third_party/h2.patch applied.
#
# Why: h2 keeps a 16 KB write buffer, a read buffer as large as the largest frame read and a
# 4 KB HPACK scratch buffer for every connection, for the connection's whole life, with no
# setting to change it. An xDS server holds one connection per proxy, almost always idle.
# The patch gives the write buffer back once a flush has written everything, the read buffer
# back while waiting for the peer, and takes the HPACK buffer when first needed (see
# docs/BENCHMARKS.md, "An idle connection gives its HTTP/2 buffers back").
#
# The workspace uses the result through `[patch.crates-io]` in Cargo.toml. Run this after
# changing h2.patch or moving to a new h2 release (update VERSION and SHA256 from the
# release's `checksum` in a Cargo.lock that uses it), then build and run the tests.
set -euo pipefail

VERSION=0.4.20
SHA256=7d29020232d6aa3fb1daca64c1127cf662cf97f254ae16c18c05b8ab635fc118

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "downloading h2 $VERSION from crates.io"
curl -sSfL -o "$work/h2.crate" "https://static.crates.io/crates/h2/h2-$VERSION.crate"
echo "$SHA256  $work/h2.crate" | sha256sum --check --quiet \
  || { echo "error: h2-$VERSION.crate does not have the checksum crates.io lists" >&2; exit 1; }
tar xzf "$work/h2.crate" -C "$work"
(cd "$work/h2-$VERSION" && patch -p1 --quiet --no-backup-if-mismatch < "$root/third_party/h2.patch") \
  || { echo "error: third_party/h2.patch does not apply to h2 $VERSION" >&2; exit 1; }
rm -rf "$root/third_party/h2"
mv "$work/h2-$VERSION" "$root/third_party/h2"
echo "third_party/h2 is h2 $VERSION with third_party/h2.patch"
