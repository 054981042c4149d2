#!/usr/bin/env bash
# Build everything and run every test suite (Rust, Python, Node).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== rust: cargo test (workspace)"
cargo test --workspace --exclude anthropic-wif-python --exclude anthropic-wif-node
