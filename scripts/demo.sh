#!/usr/bin/env bash
# The main job, offline: build the credential process, start the local token-endpoint emulator,
# and trade an identity token for an access token — then again from the cache, then call the API.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

echo "== building anthropic-wif (release)" >&2
cargo build --release --quiet -p anthropic-wif-cli -p anthropic-wif-emulator
BIN="$(target_dir)/release/anthropic-wif"
EMULATOR="$(target_dir)/release/wif-emulator"

work=$(mktemp -d)
cleanup() { [ -n "${EMU_PID:-}" ] && kill "$EMU_PID" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_emulator "$EMULATOR" "$work/emulator.out"
echo "== emulator listening at $EMU_BASE_URL" >&2

# What a workload has: an identity token file from its platform (here minted by the emulator)
# and the federation settings, in the same environment variables the official SDKs read.
mint_jwt "$EMU_BASE_URL" >"$work/identity-token"
export ANTHROPIC_BASE_URL="$EMU_BASE_URL"
export ANTHROPIC_FEDERATION_RULE_ID=fdrl_01DemoRule0000000000000000
export ANTHROPIC_ORGANIZATION_ID=00000000-0000-4000-8000-000000000001
export ANTHROPIC_SERVICE_ACCOUNT_ID=svac_01DemoServiceAccount000000
export ANTHROPIC_IDENTITY_TOKEN_FILE="$work/identity-token"
export ANTHROPIC_CONFIG_DIR="$work/config" XDG_CACHE_HOME="$work/cache"
unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_PROFILE

echo "== anthropic-wif token   (exchanges the identity token)" >&2
"$BIN" token -v
echo "== anthropic-wif token   (again: served from the shared cache, no exchange)" >&2
"$BIN" token -v
echo "== calling the Messages API with the token" >&2
TOKEN=$("$BIN" token --format token)
python3 - "$EMU_BASE_URL" "$TOKEN" <<'PY'
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
