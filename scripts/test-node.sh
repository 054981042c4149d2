#!/usr/bin/env bash
# Node face: install, build the addon, run `node --test tests/node/`, then check
# the packaging (a packed tarball installs and works with install scripts off,
# and its shipped sources form a buildable cargo workspace).
#
# Works on a fresh machine with Rust (>= 1.88) and Node (>= 18): everything it
# needs comes from `npm ci`/`npm install` (the official @anthropic-ai/sdk and
# typescript are devDependencies) and cargo.
#
# Environment:
#   ANTHROPIC_WIF_BUILD_PROFILE  debug (default here, fast) or release
#   SKIP_PACK=1                  skip the packaging checks
#   SKIP_SOURCE_BUILD=1          skip building the addon from the packed sources
#   FAULT_CASE=<name>            run only that row of tests/fault-matrix.json (tests/node/faults.test.js)
#   FAULT_CONCURRENCY=<n>        fault-matrix rows run at once (default 8; each has its own emulator)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

export ANTHROPIC_WIF_BUILD_PROFILE=${ANTHROPIC_WIF_BUILD_PROFILE:-debug}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

command -v node >/dev/null || { echo "test-node.sh: node is not on PATH (Node >= 18 needed)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "test-node.sh: cargo is not on PATH (Rust >= 1.88 needed)" >&2; exit 1; }
node -e 'const [M]=process.versions.node.split(".").map(Number); if (M < 18) { console.error("test-node.sh: Node >= 18 needed, this is " + process.version); process.exit(1) }'

echo "== node: npm install (dev dependencies + the addon, ${ANTHROPIC_WIF_BUILD_PROFILE} build)"
# The install script runs cargo; --foreground-scripts shows its output.
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --foreground-scripts
else
  npm install --no-audit --no-fund --foreground-scripts
fi
node bindings-node/scripts/node-install.js --check

echo "== node: the emulator (anthropic-wif CLI, debug)"
cargo build -p anthropic-wif-cli
export ANTHROPIC_WIF_BIN="$CARGO_TARGET_DIR/debug/anthropic-wif"

echo "== node: node --test tests/node/"
node --test tests/node/

if [ "${SKIP_PACK:-}" = "1" ]; then
  exit 0
fi

echo "== node: packaging (npm pack; install the tarball with scripts off)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# --ignore-scripts: prepack would make a release build; the debug addon just built is packed instead.
TARBALL=$(npm pack --ignore-scripts --pack-destination "$WORK" --silent | tail -n 1)
TARBALL="$WORK/$TARBALL"
tar -tzf "$TARBALL" > "$WORK/contents"
for f in package/bindings-node/index.js package/bindings-node/index.mjs package/bindings-node/index.d.ts package/bindings-node/index.d.mts package/bindings-node/scripts/node-install.js package/bindings-node/loader.js \
         package/Cargo.toml package/Cargo.lock package/bindings-node/src/lib.rs package/core/src/lib.rs; do
  grep -qx "$f" "$WORK/contents" || { echo "test-node.sh: $f is missing from the tarball" >&2; exit 1; }
done
grep -q '^package/anthropic-wif\..*\.node$' "$WORK/contents" || { echo "test-node.sh: no .node binary in the tarball" >&2; exit 1; }
if grep -q -e '^package/node_modules/' -e '^package/target/' -e '^package/tests/' "$WORK/contents"; then
  echo "test-node.sh: the tarball holds files it must not ship" >&2; exit 1
fi

mkdir -p "$WORK/app"
(
  cd "$WORK/app"
  echo '{"name":"app","version":"1.0.0","private":true}' > package.json
  npm install --no-audit --no-fund --ignore-scripts "$TARBALL" >/dev/null
  # From outside the checkout, with install scripts off: the shipped binary must load.
  node -e '
    const { Provider, ConfigurationError } = require("anthropic-wif");
    try { new Provider({ bogus: 1 }); process.exit(1); } catch (e) { if (!(e instanceof ConfigurationError)) throw e; }
    console.log("tarball (CJS) ok");'
  node --input-type=module -e '
    import { Provider } from "anthropic-wif";
    if (typeof Provider !== "function") process.exit(1);
    console.log("tarball (ESM) ok");'
)

if [ "${SKIP_SOURCE_BUILD:-}" = "1" ]; then
  exit 0
fi
echo "== node: build from the packed sources (no prebuilt binary for this platform)"
mkdir -p "$WORK/src"
tar -xzf "$TARBALL" -C "$WORK/src"
rm -f "$WORK"/src/package/bindings-node/anthropic-wif.*.node
(
  cd "$WORK/src/package"
  # npm stores 1985 mtimes; with a shared CARGO_TARGET_DIR cargo would call the
  # checkout's artifacts fresh. Touch the sources so this really compiles them.
  find . -name '*.rs' -exec touch {} +
  node bindings-node/scripts/node-install.js
  node -e 'const { Provider } = require("."); if (typeof Provider !== "function") process.exit(1); console.log("built from the packed sources: ok")'
)
