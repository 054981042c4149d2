#!/usr/bin/env bash
# Instructions per request forwarded by the proxy, counted with valgrind's callgrind: unlike wall-clock
# figures they do not move with the machine's load. Same upstream and request as bench/proxy_vs.sh;
# `h2load --h1 -c 16` POSTs LOW then HIGH requests through a proxy under callgrind, and per request is
# (I(HIGH) - I(LOW)) / (HIGH - LOW). Method and results: bench/PROXY.md.
#
#   bash bench/proxy_callgrind.sh                  # ours (~1 minute)
#   bash bench/proxy_callgrind.sh --nginx          # ours and nginx's worker, with the ratio
#   bash bench/proxy_callgrind.sh --bin OTHER      # another build of anthropic-wif (e.g. main's)
#   bash bench/proxy_callgrind.sh --annotate DIR   # keep the callgrind files for callgrind_annotate
#
# Needs valgrind and h2load (Debian: valgrind, nghttp2-client), and nginx for --nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
export PATH="$PATH:/usr/sbin"
for tool in valgrind h2load taskset; do
  command -v "$tool" >/dev/null || { echo "bench/proxy_callgrind.sh needs $tool (apt-get install valgrind nghttp2-client)" >&2; exit 1; }
done
echo "== building release binaries" >&2
cargo build --release --quiet -p anthropic-wif-cli
cargo build --release --quiet -p anthropic-wif-emulator
cargo build --release --quiet -p anthropic-wif-proxy --example bench_upstream
args=("$@")
has_bin=0
for a in "${args[@]}"; do [ "$a" = "--bin" ] && has_bin=1; done
[ $has_bin = 1 ] || args=(--bin "$CARGO_TARGET_DIR/release/anthropic-wif" "${args[@]}")
exec python3 bench/proxy_callgrind.py --emulator "$CARGO_TARGET_DIR/release/wif-emulator" \
  --examples "$CARGO_TARGET_DIR/release/examples" "${args[@]}"
