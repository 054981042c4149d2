#!/usr/bin/env bash
# Build everything and run every test suite: Rust (core, CLI, emulator), Python (the module with the
# official `anthropic` SDK as client), cross-language end-to-end tests, Node (the module with the
# official `@anthropic-ai/sdk` as client), a two-minute soak of the proxy, and the proxy against a headless Chromium. Works on a fresh machine
# with Rust, Python >= 3.9 and Node >= 18; Chromium is installed with apt-get when missing (scripts/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
START=$(date +%s)
step() { echo; echo "==== $* ($(( $(date +%s) - START )) s)"; }

step "rust: build"
cargo build --workspace --exclude anthropic-wif-python --exclude anthropic-wif-node --all-targets
step "rust: cargo test"
cargo test --workspace --exclude anthropic-wif-python --exclude anthropic-wif-node

step "python: the module and its tests"
bash scripts/test-python.sh

step "end to end: CLI and official SDKs together (tests/e2e)"
ensure_test_venv
run_pytest tests/e2e

step "the proxy: a two-minute soak (20 s tokens under load and streams, token endpoint outage, upstream restarts)"
ANTHROPIC_WIF_BIN="$CARGO_TARGET_DIR/debug/anthropic-wif" bash scripts/soak.sh --short

step "node: the module and its tests"
bash scripts/test-node.sh

step "end to end: the proxy with the official Node SDK and a headless Chromium (tests/e2e)"
ensure_chromium
ANTHROPIC_WIF_BIN="$CARGO_TARGET_DIR/debug/anthropic-wif" node --test tests/e2e/

step "all suites passed in $(( $(date +%s) - START )) s"
