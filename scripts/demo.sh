#!/usr/bin/env bash
# The main job, offline: build the credential process and the local token-endpoint emulator, start
# the emulator, and trade an identity token for an access token — then again from the cache, then
# call the API with it.
#
# A debug build (no optimisation, no LTO): the first run compiles ~130 crates in a few minutes on two
# cores and shows every one of them; later runs start at once. The binaries stay in target/debug/
# for trying things by hand (README, "Try it locally").
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

echo "== building anthropic-wif and wif-emulator (cargo build, debug; cargo's progress follows)" >&2
cargo build -p anthropic-wif-cli -p anthropic-wif-emulator
BIN="$(target_dir)/debug/anthropic-wif"
EMULATOR="$(target_dir)/debug/wif-emulator"

work=$(mktemp -d)
cleanup() { [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# What a workload has: the federation settings in the variables the official SDKs read, and an
# identity token file from its platform. `wif-emulator --print-env` prints exactly that (its token
# file always holds an unused test JWT).
"$EMULATOR" --print-env >"$work/env" 2>"$work/emulator.err" &
EMU_PID=$!
for _ in $(seq 1 200); do
  grep -q '^export ANTHROPIC_IDENTITY_TOKEN_FILE=' "$work/env" 2>/dev/null && break
  kill -0 "$EMU_PID" 2>/dev/null || { cat "$work/emulator.err" >&2; echo "the emulator failed to start" >&2; exit 1; }
  sleep 0.05
done
# shellcheck disable=SC1091
source "$work/env"
# Keep the demo's cache and config away from yours.
export ANTHROPIC_CONFIG_DIR="$work/config" XDG_CACHE_HOME="$work/cache"
echo "== emulator listening at $ANTHROPIC_BASE_URL; the workload's environment:" >&2
grep '^export' "$work/env" | sed 's/^/   /' >&2

echo "== anthropic-wif token   (exchanges the identity token)" >&2
"$BIN" token -v
echo "== anthropic-wif token   (again: served from the shared cache, no exchange)" >&2
"$BIN" token -v
echo "== calling the Messages API with the token" >&2
TOKEN=$("$BIN" token --format token)
python3 - "$ANTHROPIC_BASE_URL" "$TOKEN" <<'PY'
import json, sys, urllib.request
base, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(base + "/v1/messages", method="POST",
    data=json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 64,
                     "messages": [{"role": "user", "content": "Hello"}]}).encode(),
    headers={"Content-Type": "application/json", "Authorization": "Bearer " + token,
             "anthropic-beta": "oauth-2025-04-20", "anthropic-version": "2023-06-01"})
msg = json.load(urllib.request.urlopen(req))
print("   reply:", msg["content"][0]["text"], file=sys.stderr)
stats = json.load(urllib.request.urlopen(base + "/_emulator/stats"))
print("   exchanges made by the emulator:", stats["exchanges"], file=sys.stderr)
PY
echo "== done. Try it by hand: README.md, \"Try it locally\" (the binaries are in $(target_dir)/debug/)" >&2
