#!/usr/bin/env bash
# Fuzzing the parsers that take untrusted input (issue 7, item 5).
#
#   scripts/fuzz.sh            short run (CI): the proptest properties with
#                              more cases (~30 s)
#   scripts/fuzz.sh long [S]   long run: every cargo-fuzz target for S seconds
#                              each (default 600), then proptest with 100 000
#                              cases. Needs `cargo install cargo-fuzz` (about
#                              1.5 min to build here); nightly features come
#                              from RUSTC_BOOTSTRAP=1 on the stable toolchain.
#
# Targets (fuzz/fuzz_targets/): profile, token_response, jwt, expand. Crashes
# land in fuzz/artifacts/<target>/; reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-short}"
case "$mode" in
  short)
    PROPTEST_CASES="${PROPTEST_CASES:-2000}" cargo test -p anthropic-wif-core --lib proptests
    ;;
  long)
    secs="${2:-600}"
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
      echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
      exit 2
    fi
    for t in profile token_response jwt expand; do
      echo "== cargo fuzz run $t (${secs} s)"
      (cd fuzz && mkdir -p "corpus/$t" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -max_len=65536)
    done
    PROPTEST_CASES=100000 cargo test -p anthropic-wif-core --lib proptests
    ;;
  *)
    echo "usage: scripts/fuzz.sh [short | long [seconds]]" >&2
    exit 2
    ;;
esac
