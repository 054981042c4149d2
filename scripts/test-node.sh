#!/usr/bin/env bash
# Node face: run `node --test tests/node/` with the official @anthropic-ai/sdk as the client.
#
#   bash scripts/test-node.sh                    in this checkout: `npm ci` (its install script builds
#                                                the addon from source with cargo), tests in place
#   bash scripts/test-node.sh --packages DIR     against the packed packages in DIR (scripts/dist.sh
#                                                makes them): a fresh app directory gets the main
#                                                package, the platform package and the locked dev
#                                                dependencies with install scripts disabled and cargo
#                                                hidden from PATH; the tests are copied there and run
#                                                against that install. Also checks that the main package
#                                                alone names the missing platform package.
#
# Environment:
#   ANTHROPIC_WIF_BUILD_PROFILE  checkout mode: debug (default here, fast) or release
#   ANTHROPIC_WIF_BIN, ANTHROPIC_WIF_EMULATOR  the binaries the tests run (default: the debug builds)
#   NODE_APP=<dir>               --packages: the app directory (default: a temporary one, removed after);
#                                scripts/test.sh keeps it for the end-to-end tests
#   FAULT_CASE=<name>            run only that row of tests/fault-matrix.json (tests/node/faults.test.js)
#   FAULT_CONCURRENCY=<n>        fault-matrix rows run at once (default 8; each has its own emulator)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/lib.sh

export ANTHROPIC_WIF_BUILD_PROFILE=${ANTHROPIC_WIF_BUILD_PROFILE:-debug}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

PACKAGES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --packages) PACKAGES="${2:?--packages needs a directory}"; shift 2 ;;
    *) echo "test-node.sh: unknown argument $1; usage: bash scripts/test-node.sh [--packages DIR]" >&2; exit 2 ;;
  esac
done

command -v node >/dev/null || { echo "test-node.sh: node is not on PATH (Node >= 18 needed)" >&2; exit 1; }
node -e 'const [M]=process.versions.node.split(".").map(Number); if (M < 18) { console.error("test-node.sh: Node >= 18 needed, this is " + process.version); process.exit(1) }'

if [ -z "${ANTHROPIC_WIF_BIN:-}" ] || [ -z "${ANTHROPIC_WIF_EMULATOR:-}" ]; then
  echo "== node: the CLI and the emulator (debug builds)"
  cargo build -q -p anthropic-wif-cli -p anthropic-wif-emulator
fi
ANTHROPIC_WIF_BIN=$(cli_bin)
ANTHROPIC_WIF_EMULATOR=$(emulator_bin)
export ANTHROPIC_WIF_BIN ANTHROPIC_WIF_EMULATOR

if [ -z "$PACKAGES" ]; then
  command -v cargo >/dev/null || { echo "test-node.sh: cargo is not on PATH (Rust >= 1.89 builds the addon here)" >&2; exit 1; }
  echo "== node: npm ci (dev dependencies + the addon from source, ${ANTHROPIC_WIF_BUILD_PROFILE} build)"
  # The install script runs cargo; --foreground-scripts shows its output.
  npm ci --no-audit --no-fund --foreground-scripts
  node bindings-node/scripts/node-install.js --check
  echo "== node: node --test tests/node/"
  exec node --test tests/node/
fi

# ---- against the packed packages -------------------------------------------------------------
VERSION=$(node -p "require('./package.json').version")
TAG=$(node -p "require('./bindings-node/loader.js').platformTag()")
PLATFORM_PKG=$(node -p "require('./bindings-node/loader.js').packageName()")
MAIN_TGZ="$PACKAGES/anthropic-wif-$VERSION.tgz"
PLATFORM_TGZ="$PACKAGES/$PLATFORM_PKG-$VERSION.tgz"
for f in "$MAIN_TGZ" "$PLATFORM_TGZ"; do
  [ -f "$f" ] || { echo "test-node.sh: no $f (bash scripts/dist.sh makes it)" >&2; exit 2; }
done
MAIN_TGZ=$(cd "$(dirname "$MAIN_TGZ")" && pwd)/$(basename "$MAIN_TGZ")
PLATFORM_TGZ=$(cd "$(dirname "$PLATFORM_TGZ")" && pwd)/$(basename "$PLATFORM_TGZ")
# The dev dependencies the checkout's lock file pins: the SDK, TypeScript and Node's types.
DEV_DEPS=$(node -e '
  const lock = require("./package-lock.json");
  const dev = Object.keys(require("./package.json").devDependencies);
  console.log(dev.map((n) => `${n}@${lock.packages["node_modules/" + n].version}`).join(" "));')

if [ -n "${NODE_APP:-}" ]; then
  APP="$NODE_APP"
  rm -rf "$APP"
  mkdir -p "$APP"
else
  APP=$(mktemp -d)
  trap 'rm -rf "$APP" "$APP.alone"' EXIT
fi
echo "== node: a fresh app ($APP): $(basename "$MAIN_TGZ") + $(basename "$PLATFORM_TGZ"), no install scripts, no cargo"
NOCARGO_PATH=$(path_without_cargo)
(
  export PATH="$NOCARGO_PATH"
  if command -v cargo >/dev/null; then echo "test-node.sh: cargo is still on PATH" >&2; exit 1; fi
  cd "$APP"
  echo '{"name":"app","version":"1.0.0","private":true}' > package.json
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  npm install --no-audit --no-fund --ignore-scripts "$MAIN_TGZ" "$PLATFORM_TGZ" $DEV_DEPS
  echo "   installed in $(( ($(date +%s%N) - t0) / 1000000 )) ms (with the SDK, TypeScript and @types/node)"
  # Nothing of the workspace's sources came along, and the addon is the platform package's.
  if find node_modules/anthropic-wif node_modules/"$PLATFORM_PKG" -name '*.rs' -o -name Cargo.toml | grep -q .; then
    echo "test-node.sh: Rust sources were installed" >&2; exit 1
  fi
  ls node_modules/"$PLATFORM_PKG"/anthropic-wif."$TAG".node >/dev/null
  node -e '
    const { Provider, ConfigurationError, VERSION } = require("anthropic-wif");
    try { new Provider({ bogus: 1 }); process.exit(1); } catch (e) { if (!(e instanceof ConfigurationError)) throw e; }
    console.log(`   require("anthropic-wif") ok (engine ${VERSION})`);'
  node --input-type=module -e '
    import { Provider } from "anthropic-wif";
    if (typeof Provider !== "function") process.exit(1);
    console.log("   import \"anthropic-wif\" ok");'
)

echo "== node: the main package alone (optional dependencies omitted): the loader names what is missing"
ALONE="$APP.alone"
rm -rf "$ALONE"
mkdir -p "$ALONE"
(
  export PATH="$NOCARGO_PATH"
  cd "$ALONE"
  echo '{"name":"alone","version":"1.0.0","private":true}' > package.json
  npm install --no-audit --no-fund --ignore-scripts --omit=optional "$MAIN_TGZ" >/dev/null
  if node -e 'require("anthropic-wif")' 2>err.txt; then echo "test-node.sh: loaded without the platform package" >&2; exit 1; fi
  for want in "$PLATFORM_PKG is not installed" "--omit=optional" "build it from source" "npm install /path/to/the/checkout"; do
    grep -qF -- "$want" err.txt || { echo "test-node.sh: the loader's error lacks \"$want\":" >&2; cat err.txt >&2; exit 1; }
  done
  echo "   $(grep -o "no native addon for this platform ([^)]*): [^.]*" err.txt)"
)
rm -rf "$ALONE"

echo "== node: node --test tests/node/ against the install"
mkdir -p "$APP/tests"
cp -R tests/node "$APP/tests/node"
cp -R tests/e2e "$APP/tests/e2e"
cp tests/fault-matrix.json "$APP/tests/"
cd "$APP"
PATH="$NOCARGO_PATH" node --test tests/node/
