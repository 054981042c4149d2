#!/usr/bin/env bash
# Every benchmark, side by side with the official SDKs, in one run:  bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
echo "== building release binaries" >&2
cargo build --release --quiet -p anthropic-wif-cli
ensure_test_venv
echo
echo "## credential process (CLI) vs official Python SDK"
"$VENV/bin/python" bench/cli_bench.py

echo
echo "## proxy overhead vs direct calls"
bash bench/proxy_bench.sh
