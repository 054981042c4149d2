#!/usr/bin/env bash
# Build everything and run every test suite: Rust (core, CLI, emulator, proxy); then the release
# artefacts (scripts/dist.sh: wheel, sdist, npm packages, CLI archive), installed the way users
# install them (fresh venv / fresh app, install scripts off, cargo hidden from PATH), under the
# Python and Node suites with the official SDKs as clients; the cross-language end-to-end tests
# with the CLI from the release archive, a two-minute soak of the proxy, the proxy against a headless
# Chromium (installed with apt-get when missing, scripts/lib.sh), the real Claude Code against the
# emulator through each way of running it (the pinned release from the npm registry, cached in .tools/
# or $WIF_TOOLS_DIR); and the from-source paths (the sdist, `npm install <checkout>`).
# Needs Rust, Python >= 3.9, Node >= 18 and the package registries (crates.io, PyPI, npm: it installs
# the build tools, pytest, the SDKs and the npm dev dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
START=$(date +%s)
step() { echo; echo "==== $* ($(( $(date +%s) - START )) s)"; }

step "rust: build"
cargo build --workspace --exclude anthropic-wif-python --exclude anthropic-wif-node --all-targets
step "rust: cargo test"
cargo test --workspace --exclude anthropic-wif-python --exclude anthropic-wif-node

step "dist: every release artefact for this platform (scripts/dist.sh)"
bash scripts/dist.sh
VERSION=$(node -p "require('./package.json').version")
TAG=$(node -p "require('./bindings-node/loader.js').platformTag()")

# Everything installed from dist/ lives here; rebuilt on every run.
WORK="$CARGO_TARGET_DIR/installed"
rm -rf "$WORK"
mkdir -p "$WORK"
step "the CLI archive, unpacked: its binary is the CLI under test from here on"
tar -xzf "dist/anthropic-wif-$VERSION-$TAG.tar.gz" -C "$WORK"
export ANTHROPIC_WIF_BIN="$WORK/anthropic-wif-$VERSION-$TAG/anthropic-wif"
export ANTHROPIC_WIF_EMULATOR="$CARGO_TARGET_DIR/debug/wif-emulator"
"$ANTHROPIC_WIF_BIN" --version

step "python: the wheel in a fresh venv (no cargo), tests/python"
export VENV="$WORK/venv"
bash scripts/test-python.sh --wheel "$(ls dist/anthropic_wif-"$VERSION"-*.whl)"

step "node: the packed packages in a fresh app (no cargo, no install scripts), tests/node"
export NODE_APP="$WORK/app"
bash scripts/test-node.sh --packages dist

step "end to end: the CLI, the installed modules and the official SDKs (tests/e2e, Python)"
ensure_test_venv
ANTHROPIC_WIF_NODE_APP="$NODE_APP" PATH="$(path_without_cargo)" run_pytest tests/e2e

step "end to end: Claude Code, the pinned release from npm (cached in the tools dir)"
# One tools dir for the install here and the tests run from the app below.
export WIF_TOOLS_DIR="${WIF_TOOLS_DIR:-$ROOT/.tools}"
node tests/e2e/claude_code.mjs install

step "end to end: the proxy and the token cache with the official Node SDK, a headless Chromium and the real Claude Code (tests/e2e, in the app)"
ensure_chromium
(cd "$NODE_APP" && PATH="$(path_without_cargo)" node --test tests/e2e/)

step "the proxy: a two-minute soak (20 s tokens under load and streams, token endpoint outage, upstream restarts)"
bash scripts/soak.sh --short

step "from source: the sdist with Rust (pip, dev profile) and without (maturin names what is missing)"
bash scripts/test-source.sh --sdist "dist/anthropic_wif-$VERSION.tar.gz"

step "from source: npm install <checkout> builds the addon with cargo"
bash scripts/test-source.sh --npm-checkout

step "all suites passed in $(( $(date +%s) - START )) s"
