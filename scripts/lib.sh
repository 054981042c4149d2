# Shared helpers for the project's scripts (sourced, not run).
# target_dir: cargo's target directory (honours CARGO_TARGET_DIR).
target_dir() {
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then echo "$CARGO_TARGET_DIR"; else echo "$(pwd)/target"; fi
}
# start_emulator BIN OUTFILE [ARGS…]: start `anthropic-wif emulator` in the background on a free loopback
# port, wait for its ready line, and set EMU_PID and EMU_BASE_URL.
start_emulator() {
  local bin="$1" out="$2"; shift 2
  "$bin" emulator --listen 127.0.0.1:0 "$@" >"$out" 2>"$out.err" &
  EMU_PID=$!
  for _ in $(seq 1 200); do
    if grep -q base_url "$out" 2>/dev/null; then break; fi
    if ! kill -0 "$EMU_PID" 2>/dev/null; then cat "$out.err" >&2; echo "emulator failed to start" >&2; return 1; fi
    sleep 0.05
  done
  EMU_BASE_URL=$(sed -n 's/.*"base_url":"\([^"]*\)".*/\1/p' "$out" | head -n1)
  [ -n "$EMU_BASE_URL" ] || { echo "emulator printed no base_url" >&2; return 1; }
}
# mint_jwt BASE_URL: a fresh single-use test JWT from the emulator.
mint_jwt() {
  python3 - "$1" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/_emulator/jwt", data=b"{}", headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["jwt"])
PY
}
# ensure_test_venv: the test venv (.venv-test, shared with scripts/test-python.sh) with pytest, the
# official `anthropic` SDK and `prometheus_client` (its parser reads the proxy's /metrics); sets VENV.
ensure_test_venv() {
  VENV="${VENV:-$(pwd)/.venv-test}"
  if [ ! -x "$VENV/bin/python" ]; then "${PYTHON:-python3}" -m venv "$VENV"; fi
  if ! "$VENV/bin/python" -c 'import pytest, anthropic, prometheus_client' 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=7" "anthropic>=2.10" "prometheus_client>=0.20"
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
