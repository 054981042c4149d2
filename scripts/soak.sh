#!/usr/bin/env bash
# Endurance and fault soak of `anthropic-wif proxy` against the emulator, loopback only (scripts/soak.py
# says what runs and what passes). Not part of CI's default run except the short form (scripts/test.sh).
#
#   bash scripts/soak.sh             # 25 min endurance (60 s tokens) + fault phase (2 min token outage,
#                                    # 2 upstream restarts): ~29 minutes
#   bash scripts/soak.sh --short     # ~2 minutes: 1 min endurance with 20 s tokens, 30 s outage, 2 restarts
#   bash scripts/soak.sh --minutes 30 --no-faults
#
# Uses $ANTHROPIC_WIF_BIN and $ANTHROPIC_WIF_EMULATOR when set, else builds the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
BIN="${ANTHROPIC_WIF_BIN:-}"
EMULATOR="${ANTHROPIC_WIF_EMULATOR:-}"
if [ -z "$BIN" ] || [ -z "$EMULATOR" ]; then
  cargo build --release --quiet -p anthropic-wif-cli -p anthropic-wif-emulator
  BIN="${BIN:-$CARGO_TARGET_DIR/release/anthropic-wif}"
  EMULATOR="${EMULATOR:-$CARGO_TARGET_DIR/release/wif-emulator}"
fi
exec python3 scripts/soak.py --bin "$BIN" --emulator "$EMULATOR" "$@"
