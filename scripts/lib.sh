# Shared helpers for the project's scripts (sourced, not run).
# target_dir: cargo's target directory (honours CARGO_TARGET_DIR).
target_dir() {
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then echo "$CARGO_TARGET_DIR"; else echo "$(pwd)/target"; fi
}
# The binaries the test suites run: the CLI under test is $ANTHROPIC_WIF_BIN, the emulator (test tooling,
# its own `wif-emulator` binary, not part of the CLI) is $ANTHROPIC_WIF_EMULATOR; unset, each is the
# debug build under the target dir. tests/python/conftest.py, tests/e2e/proxy_harness.py and
# tests/node/_helpers.js apply this same rule.
cli_bin() { echo "${ANTHROPIC_WIF_BIN:-$(target_dir)/debug/anthropic-wif}"; }
emulator_bin() { echo "${ANTHROPIC_WIF_EMULATOR:-$(target_dir)/debug/wif-emulator}"; }
# path_without_cargo: $PATH without the directories that hold cargo or rustc, as on a machine without
# Rust (installs of the prebuilt artefacts are tested with it).
path_without_cargo() {
  local out="" d
  local IFS=:
  for d in $PATH; do
    [ -n "$d" ] || continue
    if [ -x "$d/cargo" ] || [ -x "$d/rustc" ]; then continue; fi
    out="${out:+$out:}$d"
  done
  echo "$out"
}
# ensure_test_venv: the test venv (.venv-test, shared with scripts/test-python.sh) with pytest, the
# official `anthropic` SDK, PyYAML (tests/e2e reads the Kubernetes example) and `prometheus_client`
# (its parser reads the proxy's /metrics); sets VENV.
ensure_test_venv() {
  VENV="${VENV:-$(pwd)/.venv-test}"
  if [ ! -x "$VENV/bin/python" ]; then "${PYTHON:-python3}" -m venv "$VENV"; fi
  if ! "$VENV/bin/python" -c 'import pytest, anthropic, yaml, prometheus_client' 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7" "anthropic>=2.10" pyyaml "prometheus_client>=0.20"
  fi
}
# run_pytest DIR…: pytest in the test venv; "no tests collected" (exit 5) is a failure.
run_pytest() {
  local rc=0
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests in $*: that is a failure" >&2; return 1; fi
  return "$rc"
}
# ensure_chromium: a headless browser for tests/e2e/proxy_browser.test.mjs; installs Debian's `chromium`
# with apt-get when missing (as root, or through passwordless sudo). Sets CHROMIUM.
ensure_chromium() {
  CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
  if [ -z "$CHROMIUM" ]; then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
      if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
        echo "Chromium is needed for the proxy's browser test: install it (apt-get install chromium) or set CHROMIUM" >&2
        return 1
      fi
    fi
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium >/dev/null
    CHROMIUM=$(command -v chromium)
  fi
  export CHROMIUM
}
