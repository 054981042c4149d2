#!/usr/bin/env bash
# The proxy side by side with nginx and HAProxy in front of the same upstream, in one run (loopback only,
# bounded load). Prints requests/s at 1/16/64/256 connections, added latency p50/p99 over direct, CPU seconds
# per 10 000 requests, peak RSS and SSE timings, with ratios against nginx. Method and results: bench/PROXY.md.
#
#   bash bench/proxy_vs.sh              # full run (3 interleaved rounds x 5 s per cell, ~8 minutes)
#   bash bench/proxy_vs.sh --quick      # smoke: 1 round x 2 s, 1 and 64 connections (~1 minute)
#   bash bench/proxy_vs.sh --old BIN    # add another anthropic-wif build as a contender
#
# Installs nginx, haproxy and wrk with apt-get when missing (as root, or with passwordless sudo).
# Needs 2 CPUs: the load generator runs on CPU 0, every server on CPU 1. Check `uptime` first: other
# work on the machine shows in every figure (the load average is printed with the table).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"

missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      echo "bench/proxy_vs.sh needs ${missing[*]}: install them (apt-get install ${missing[*]})" >&2; exit 1
    fi
  fi
  echo "== installing ${missing[*]} (apt-get)" >&2
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin"
if [ "$(nproc)" -lt 2 ]; then echo "bench/proxy_vs.sh needs 2 CPUs (load generator and servers apart)" >&2; exit 1; fi

echo "== building release binaries" >&2
cargo build --release --quiet -p anthropic-wif-cli -p anthropic-wif-emulator
cargo build --release --quiet -p anthropic-wif-proxy --example bench_upstream --example bench_sse
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec python3 bench/proxy_vs.py --bin "$CARGO_TARGET_DIR/release/anthropic-wif" \
  --emulator "$CARGO_TARGET_DIR/release/wif-emulator" \
  --examples "$CARGO_TARGET_DIR/release/examples" "$@"
