#!/usr/bin/env bash
# Endurance and fault soak of `anthropic-wif proxy` against the emulator, loopback only (scripts/soak.py
# says what runs and what passes). Not part of CI's default run except the short form (scripts/test.sh).
#
#   bash scripts/soak.sh             # 25 min endurance (60 s tokens) + fault phase (2 min token outage,
#                                    # 2 upstream restarts): ~29 minutes
#   bash scripts/soak.sh --short     # ~2 minutes: 1 min endurance with 20 s tokens, 30 s outage, 2 restarts
#   bash scripts/soak.sh --minutes 30 --no-faults
#
# Uses $ANTHROPIC_WIF_BIN when set, else builds the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export CARGO_TARGET_DIR="$(target_dir)"
BIN="${ANTHROPIC_WIF_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p anthropic-wif-cli
  BIN="$CARGO_TARGET_DIR/release/anthropic-wif"
fi
exec python3 scripts/soak.py --bin "$BIN" "$@"
