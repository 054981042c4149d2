#!/usr/bin/env bash
# Proxy overhead vs direct calls to the emulator, side by side in one run (loopback only, bounded load).
# Usage: bash bench/proxy_bench.sh   (BENCH_LAT_N=2000 BENCH_TP_SECS=3; BENCH_PROXY_LOG=0 to drop the access log)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p anthropic-wif-proxy --example proxy_bench
# The proxy's access log (one line per request) goes to stderr; discard it so the terminal is not the bottleneck.
"${CARGO_TARGET_DIR:-target}/release/examples/proxy_bench" 2>/dev/null
