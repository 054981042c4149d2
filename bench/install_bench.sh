#!/usr/bin/env bash
# Install time and size of the prebuilt artefacts, side by side with the official SDKs they plug into,
# each installed the same way into a fresh environment with an empty package cache:
#
#   pip install <our wheel>                 vs  pip install anthropic              (fresh venv, --no-cache-dir)
#   npm install <our two tarballs>          vs  npm install @anthropic-ai/sdk      (fresh app, empty npm cache)
#   plus the artefact sizes (wheel, .node, CLI binary, tarballs, archive)
#
#   bash bench/install_bench.sh [--runs N]      (default 3; medians; needs dist/: bash scripts/dist.sh)
#
# Ours come from local files (nothing is published yet), the SDKs from the registries: their times
# include downloads, ours do not (our wheel is 2-3 MB; see the sizes). Goal: ours under 5 s and 10 MB,
# faster and smaller than the SDK. Results and method: bench/INSTALL.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh
RUNS=3
[ "${1:-}" = "--runs" ] && RUNS="${2:?--runs needs a number}"
PYTHON=${PYTHON:-python3}
VERSION=$(node -p "require('./package.json').version")
TAG=$(node -p "require('./bindings-node/loader.js').platformTag()")
WHEEL=$(ls "$ROOT"/dist/anthropic_wif-"$VERSION"-*.whl 2>/dev/null || true)
MAIN_TGZ="$ROOT/dist/anthropic-wif-$VERSION.tgz"
PLATFORM_TGZ="$ROOT/dist/anthropic-wif-$TAG-$VERSION.tgz"
ARCHIVE="$ROOT/dist/anthropic-wif-$VERSION-$TAG.tar.gz"
for f in "$WHEEL" "$MAIN_TGZ" "$PLATFORM_TGZ" "$ARCHIVE"; do
  [ -n "$f" ] && [ -f "$f" ] || { echo "install_bench.sh: dist/ is incomplete; run bash scripts/dist.sh first" >&2; exit 2; }
done
SDK_NPM=$(node -p 'require("./package-lock.json").packages["node_modules/@anthropic-ai/sdk"].version')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
NOCARGO=$(path_without_cargo)

now_ms() { date +%s%3N; }
du_bytes() { du -sb "$@" | awk '{s += $1} END {print s}'; }

# pip_run SPEC…: fresh venv, timed `pip install SPEC…` (no cache); prints "ms bytes" (bytes = site-packages growth)
pip_run() {
  local v="$WORK/venv-$RANDOM"
  "$PYTHON" -m venv "$v"
  local sp; sp=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local before; before=$(du_bytes "$sp")
  local t0; t0=$(now_ms)
  PATH="$NOCARGO" "$v/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --only-binary :all: "$@" >/dev/null
  local t1; t1=$(now_ms)
  echo "$((t1 - t0)) $(( $(du_bytes "$sp") - before ))"
  rm -rf "$v"
}

# npm_run SPEC…: fresh app and empty cache, timed `npm install SPEC…`; prints "ms bytes" (node_modules)
npm_run() {
  local a="$WORK/app-$RANDOM"
  mkdir -p "$a" && (cd "$a" && echo '{"name":"app","version":"1.0.0","private":true}' > package.json)
  local t0; t0=$(now_ms)
  (cd "$a" && PATH="$NOCARGO" npm install --no-audit --no-fund --ignore-scripts --cache "$a/.npm-cache" "$@" >/dev/null)
  local t1; t1=$(now_ms)
  echo "$((t1 - t0)) $(du_bytes "$a/node_modules")"
  rm -rf "$a"
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# bench NAME FN SPEC…: RUNS runs; sets <NAME>_MS and <NAME>_BYTES to the medians
bench() {
  local name=$1 fn=$2; shift 2
  local runs=()
  for _ in $(seq 1 "$RUNS"); do runs+=("$($fn "$@")"); done
  printf -v "${name}_MS" '%s' "$(printf '%s\n' "${runs[@]}" | awk '{print $1}' | median)"
  printf -v "${name}_BYTES" '%s' "$(printf '%s\n' "${runs[@]}" | awk '{print $2}' | median)"
  echo "   $name: $(printf '%s\n' "${runs[@]}" | awk '{printf "%d ms ", $1}')" >&2
}

echo "== pip: fresh venv, no cache, $RUNS runs each (python $("$PYTHON" -c 'import platform; print(platform.python_version())'))" >&2
bench PIP_OURS pip_run "$WHEEL"
bench PIP_SDK pip_run anthropic
echo "== npm: fresh app, empty cache, install scripts off, $RUNS runs each (npm $(npm --version))" >&2
bench NPM_OURS npm_run "$MAIN_TGZ" "$PLATFORM_TGZ"
bench NPM_SDK npm_run "@anthropic-ai/sdk@$SDK_NPM"

CLI_BIN_BYTES=$(tar -xzOf "$ARCHIVE" "anthropic-wif-$VERSION-$TAG/anthropic-wif" | wc -c)
NODE_BYTES=$(tar -xzOf "$PLATFORM_TGZ" "package/anthropic-wif.$TAG.node" | wc -c)

"$PYTHON" - <<PY
rows = [
    ("pip install: time", $PIP_OURS_MS / 1000, $PIP_SDK_MS / 1000, "s"),
    ("pip install: installed size", $PIP_OURS_BYTES / 1e6, $PIP_SDK_BYTES / 1e6, "MB"),
    ("npm install: time", $NPM_OURS_MS / 1000, $NPM_SDK_MS / 1000, "s"),
    ("npm install: node_modules size", $NPM_OURS_BYTES / 1e6, $NPM_SDK_BYTES / 1e6, "MB"),
]
print()
print("ours: the wheel / the two npm tarballs; official SDK: pip install anthropic / npm install @anthropic-ai/sdk@$SDK_NPM")
print(f"{'':34} {'ours':>9} {'official SDK':>13} {'ours/SDK':>9}")
for what, ours, sdk, unit in rows:
    print(f"{what:34} {ours:>7.2f} {unit:<2}{sdk:>10.2f} {unit:<2} {ours / sdk:>8.2f}x")
print()
import os
sizes = [
    ("wheel", os.path.getsize("$WHEEL")),
    ("npm main package (.tgz)", os.path.getsize("$MAIN_TGZ")),
    ("npm $TAG package (.tgz)", os.path.getsize("$PLATFORM_TGZ")),
    ("  its .node addon, unpacked", $NODE_BYTES),
    ("CLI archive (.tar.gz)", os.path.getsize("$ARCHIVE")),
    ("  its binary, unpacked", $CLI_BIN_BYTES),
]
for what, n in sizes:
    print(f"{what:34} {n / 1e6:>7.2f} MB")
PY
