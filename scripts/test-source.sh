#!/usr/bin/env bash
# The from-source install paths, for platforms without a prebuilt artefact and for contributors:
#
#   bash scripts/test-source.sh --sdist PATH     `pip install` of the sdist builds and works where Rust
#                                                is present (dev profile here, for time; a user gets
#                                                release); with cargo hidden and maturin's toolchain
#                                                bootstrap off (MATURIN_NO_INSTALL_RUST=1, as offline),
#                                                it fails saying cargo is missing
#   bash scripts/test-source.sh --npm-checkout   `npm install /path/to/checkout` in a fresh app builds the
#                                                addon with cargo (the root package.json's install hook)
#                                                and the Node SDK tests pass against it
#
# Uses $CARGO_TARGET_DIR (shared with the other builds), $ANTHROPIC_WIF_BIN / $ANTHROPIC_WIF_EMULATOR
# (default: the debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
PYTHON="${PYTHON:-python3}"
ANTHROPIC_WIF_BIN=$(cli_bin)
ANTHROPIC_WIF_EMULATOR=$(emulator_bin)
export ANTHROPIC_WIF_BIN ANTHROPIC_WIF_EMULATOR
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

sdist() {
  local sdist="$1"
  [ -f "$sdist" ] || { echo "test-source.sh: no sdist at $sdist (bash scripts/dist.sh makes it)" >&2; exit 2; }
  echo "== source: pip install $(basename "$sdist") with Rust present (maturin, dev profile)"
  "$PYTHON" -m venv "$WORK/venv"
  local pip=("$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip[@]}" "pytest>=7" "anthropic>=2.10"
  # --no-cache-dir: a wheel cached from an earlier build must not stand in for this one.
  MATURIN_PEP517_ARGS="--profile dev" "${pip[@]}" --no-cache-dir "$sdist"
  (cd tests/python && "$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider test_sdk_sync.py)

  echo "== source: pip install $(basename "$sdist") without cargo (maturin's Rust bootstrap off, as offline)"
  "$PYTHON" -m venv "$WORK/bare"
  local rc=0
  PATH="$(path_without_cargo)" MATURIN_NO_INSTALL_RUST=1 \
    "$WORK/bare/bin/python" -m pip install --disable-pip-version-check --no-cache-dir "$sdist" >"$WORK/bare.log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then echo "test-source.sh: the sdist installed without cargo" >&2; exit 1; fi
  grep -q "Cargo, the Rust package manager, is not installed or is not on PATH" "$WORK/bare.log" || {
    echo "test-source.sh: pip failed without saying that cargo is missing:" >&2; tail -30 "$WORK/bare.log" >&2; exit 1; }
  grep -q "https://rustup.rs" "$WORK/bare.log" || { echo "test-source.sh: the message does not say where to get Rust" >&2; exit 1; }
  echo "   pip failed (exit $rc) with: $(grep -m1 "Cargo, the Rust package manager" "$WORK/bare.log")"
}

npm_checkout() {
  command -v cargo >/dev/null || { echo "test-source.sh: cargo is not on PATH" >&2; exit 1; }
  local sdk
  sdk=$(node -p 'require("./package-lock.json").packages["node_modules/@anthropic-ai/sdk"].version')
  echo "== source: npm install $ROOT (its install hook runs cargo build -p anthropic-wif-node, debug)"
  mkdir -p "$WORK/app/tests"
  cd "$WORK/app"
  echo '{"name":"app","version":"1.0.0","private":true}' > package.json
  ANTHROPIC_WIF_BUILD_PROFILE=debug npm install --no-audit --no-fund --foreground-scripts "$ROOT" "@anthropic-ai/sdk@$sdk"
  node -e 'const p = require.resolve("anthropic-wif"); console.log(`   require("anthropic-wif") -> ${p}`);'
  cp -R "$ROOT/tests/node" tests/node
  cp "$ROOT/tests/fault-matrix.json" tests/
  node --test tests/node/sdk.test.js
}

case "${1:-}" in
  --sdist) sdist "${2:?--sdist needs a path}" ;;
  --npm-checkout) npm_checkout ;;
  *) echo "usage: bash scripts/test-source.sh --sdist PATH | --npm-checkout" >&2; exit 2 ;;
esac
