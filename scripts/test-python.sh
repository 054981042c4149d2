#!/usr/bin/env bash
# Python face: install the package into a venv together with the official `anthropic` SDK from PyPI,
# and run tests/python against the emulator (spawned by the tests as `wif-emulator`).
#
#   bash scripts/test-python.sh                  build the package from this checkout (`pip install .`,
#                                                maturin; needs Rust), as a contributor does
#   bash scripts/test-python.sh --wheel PATH     install that wheel (scripts/dist.sh builds it) into a
#                                                fresh venv with cargo hidden from PATH, binary packages
#                                                only: what a user without Rust gets; the tests run
#                                                against that install
#
# Env:
#   PYTHON            interpreter to build the venv from (default: python3)
#   VENV              venv directory (default: .venv-test at the repo root; --wheel recreates it)
#   PY_BUILD_PROFILE  cargo profile for the checkout build (default: dev; "release" for benches)
#   ANTHROPIC_WIF_BIN the CLI binary the tests run (default: a copy of the debug build)
#   ANTHROPIC_WIF_EMULATOR  the emulator binary (default: the debug build of wif-emulator)
#   PYTEST_ARGS       extra pytest arguments
#   FAULT_CASE        run one case of the fault matrix (tests/fault-matrix.json) in test_faults.py
#   FAULT_CONCURRENCY how many fault-matrix cases run at once, each with its own emulator (default 8)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
source scripts/lib.sh
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv-test}"
PROFILE="${PY_BUILD_PROFILE:-dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

WHEEL=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) WHEEL="${2:?--wheel needs a path}"; shift 2 ;;
    *) echo "test-python.sh: unknown argument $1; usage: bash scripts/test-python.sh [--wheel PATH]" >&2; exit 2 ;;
  esac
done

"$PYTHON" - <<'PY' || { echo "test-python: Python >= 3.9 is required ($PYTHON)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 9) else 1)
PY

echo "== python: the binaries the tests run"
if [ -z "${ANTHROPIC_WIF_BIN:-}" ] || [ -z "${ANTHROPIC_WIF_EMULATOR:-}" ]; then
    cargo build -q -p anthropic-wif-cli -p anthropic-wif-emulator
fi
if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || { echo "test-python.sh: no wheel at $WHEEL (bash scripts/dist.sh builds it)" >&2; exit 2; }
    echo "== python: a fresh venv $VENV with $(basename "$WHEEL"), cargo hidden from PATH"
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ -z "${ANTHROPIC_WIF_BIN:-}" ]; then
    # A private copy: a shared target dir may be rebuilt by someone else mid-run.
    cp "$CARGO_TARGET_DIR/debug/anthropic-wif" "$VENV/bin/anthropic-wif"
    export ANTHROPIC_WIF_BIN="$VENV/bin/anthropic-wif"
fi
if [ -z "${ANTHROPIC_WIF_EMULATOR:-}" ]; then
    cp "$CARGO_TARGET_DIR/debug/wif-emulator" "$VENV/bin/wif-emulator"
    export ANTHROPIC_WIF_EMULATOR="$VENV/bin/wif-emulator"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
TEST_DEPS=("pytest>=7" "anthropic>=2.10" "mypy>=1.8")

if [ -n "$WHEEL" ]; then
    # Binary packages only and no cargo: nothing may compile, here or later in the tests.
    PATH="$(path_without_cargo)"
    export PATH
    if command -v cargo >/dev/null; then echo "test-python.sh: cargo is still on PATH" >&2; exit 1; fi
    t0=$(date +%s%N)
    "${PIP[@]}" --only-binary :all: "$WHEEL" "${TEST_DEPS[@]}"
    echo "   installed in $(( ($(date +%s%N) - t0) / 1000000 )) ms (with the test dependencies)"
    # The tests must import the installed package, not the checkout's sources.
    "$VENV/bin/python" - "$VENV" <<'PY'
import os, sys, anthropic_wif, anthropic_wif._native as n
venv = os.path.realpath(sys.argv[1])
for m in (anthropic_wif, n):
    if not os.path.realpath(m.__file__).startswith(venv + os.sep):
        sys.exit(f"test-python.sh: {m.__name__} comes from {m.__file__}, not the installed wheel in {venv}")
print(f"   anthropic_wif from {os.path.dirname(anthropic_wif.__file__)}")
PY
else
    "${PIP[@]}" --upgrade pip
    "${PIP[@]}" "${TEST_DEPS[@]}"
    echo "== python: pip install . (maturin, profile $PROFILE)"
    # pip builds the wheel with maturin in an isolated build environment, exactly
    # as a user's `pip install <checkout>` does; MATURIN_PEP517_ARGS only picks the
    # cargo profile (dev keeps CI fast, release for benchmarks).
    MATURIN_PEP517_ARGS="--profile $PROFILE" \
        "${PIP[@]}" --force-reinstall --no-deps "$ROOT"
fi

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
