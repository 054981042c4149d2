#!/usr/bin/env bash
# Every benchmark, side by side with the official SDKs, in one run:  bash bench/run.sh
# (the last one, bench/install_bench.sh, installs the release artefacts; see bench/INSTALL.md)
# Release builds throughout; loopback only; bounded load. Figures on a shared 2-core machine vary ±20 %.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
export ANTHROPIC_WIF_BIN="$CARGO_TARGET_DIR/release/anthropic-wif"
export ANTHROPIC_WIF_EMULATOR="$CARGO_TARGET_DIR/release/wif-emulator"

echo "== building release binaries" >&2
cargo build --release --quiet -p anthropic-wif-cli -p anthropic-wif-emulator
VENV="$(pwd)/.venv-bench" ensure_test_venv
VENV="$(pwd)/.venv-bench"
MATURIN_PEP517_ARGS="--profile release" "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps .
ANTHROPIC_WIF_BUILD_PROFILE=release npm install --no-audit --no-fund --silent

echo
echo "## credential process (CLI) vs the official Python SDK's CredentialsFile, whole processes"
"$VENV/bin/python" bench/cli_bench.py
echo
echo "## Python module vs the official SDK's WorkloadIdentityCredentials"
"$VENV/bin/python" bench/python_bench.py
echo
echo "## Node module vs a pure-JS fetch exchange"
node bench/node_bench.mjs
echo
echo "## proxy next to nginx and HAProxy, and direct calls (bench/PROXY.md)"
bash bench/proxy_vs.sh
echo
echo "## install time and size vs the official SDKs (the release artefacts of scripts/dist.sh)"
ls dist/anthropic_wif-*.whl >/dev/null 2>&1 || bash scripts/dist.sh
bash bench/install_bench.sh
