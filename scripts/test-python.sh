#!/usr/bin/env bash
# Python face: build the package, install it into a fresh venv together with
# the official `anthropic` SDK from PyPI, and run tests/python against the
# emulator (spawned by the tests as `anthropic-wif emulator`).
#
# Env:
#   PYTHON            interpreter to build the venv from (default: python3)
#   VENV              venv directory (default: .venv-test at the repo root)
#   PY_BUILD_PROFILE  cargo profile for the extension (default: dev; "release" for benches)
#   ANTHROPIC_WIF_BIN the CLI binary the tests spawn (default: $CARGO_TARGET_DIR/debug/anthropic-wif)
#   PYTEST_ARGS       extra pytest arguments
#   FAULT_CASE        run one case of the fault matrix (tests/fault-matrix.json) in test_faults.py
#   FAULT_CONCURRENCY how many fault-matrix cases run at once, each with its own emulator (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv-test}"
PROFILE="${PY_BUILD_PROFILE:-dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

"$PYTHON" - <<'PY' || { echo "test-python: Python >= 3.9 is required ($PYTHON)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 9) else 1)
PY

echo "== python: venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi

echo "== python: CLI binary (the tests spawn 'anthropic-wif emulator' and run 'anthropic-wif token')"
if [ -z "${ANTHROPIC_WIF_BIN:-}" ]; then
    cargo build -q -p anthropic-wif-cli
    # A private copy: a shared target dir may be rebuilt by someone else mid-run.
    cp "$CARGO_TARGET_DIR/debug/anthropic-wif" "$VENV/bin/anthropic-wif"
    export ANTHROPIC_WIF_BIN="$VENV/bin/anthropic-wif"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7" "anthropic>=2.10" "mypy>=1.8"

echo "== python: pip install . (maturin, profile $PROFILE)"
# pip builds the wheel with maturin in an isolated build environment, exactly
# as a user's `pip install <checkout>` does; MATURIN_PEP517_ARGS only picks the
# cargo profile (dev keeps CI fast, release for benchmarks).
MATURIN_PEP517_ARGS="--profile $PROFILE" \
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT"

echo "== python: pytest tests/python"
cd "$ROOT/tests/python"
set +e
# shellcheck disable=SC2086
"$VENV/bin/python" -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} .
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test-python: pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
