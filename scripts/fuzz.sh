#!/usr/bin/env bash
# Fuzzes every parser that reads untrusted bytes (fuzz/fuzz_targets: the YAML loader, the DNS
# fast path, the gRPC message framing, the SotW request parser, the CA's CSR handling) for
# SECONDS each (default 30), starting from the seeds kept in fuzz/seeds/TARGET (what it
# finds goes to fuzz/corpus/TARGET, not kept in git). A crash
# fails the run; libFuzzer prints the input and cargo-fuzz keeps it in fuzz/artifacts/TARGET
# (turn it into a regression test beside the parser).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "installing the nightly toolchain (cargo-fuzz builds with libFuzzer's instrumentation)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== fuzz $t for ${secs}s"
  # -rss_limit_mb: a parser that allocates without bound is a finding too.
  log="fuzz/corpus/$t.log"
  status=0
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -print_final_stats=1 >"$log" 2>&1 || status=$?
  tail -n 12 "$log"
  if [ "$status" != 0 ]; then
    # The finding itself (the panic, the input and where libFuzzer kept it), not only the
    # tail of cargo-fuzz's own backtrace.
    echo "fuzz target $t failed (exit $status); what libFuzzer reported:" >&2
    grep -a -E -A3 "panicked at|ERROR: |Test unit written|^Base64:|fuzz/artifacts" "$log" | head -n 60 >&2
    for f in fuzz/artifacts/"$t"/*; do
      [ -f "$f" ] && { echo "input $f (hex):" >&2; od -A x -t x1z "$f" | head -n 20 >&2; }
    done
    exit "$status"
  fi
done
echo "fuzz: ${#targets[@]} targets ran ${secs}s each without a crash"
