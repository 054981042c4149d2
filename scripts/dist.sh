#!/usr/bin/env bash
# Build every release artefact of one platform into dist/ and check each one:
#
#   anthropic_wif-<v>-cp39-abi3-<platform>.whl   the Python wheel (abi3; manylinux2014 = glibc 2.17 on
#                                                 Linux gnu, checked with auditwheel show)
#   anthropic_wif-<v>.tar.gz                      the sdist (builds from source with Rust)
#   anthropic-wif-<v>.tgz                         the npm main package (JS/TS surface + loader, no sources)
#   anthropic-wif-<tag>-<v>.tgz                   the npm platform package (only the .node file)
#   anthropic-wif-<v>-<tag>.tar.gz (.zip)         the CLI: binary, LICENSE-*, README, completions, man pages
#   SHA256SUMS
#
# Usage: bash scripts/dist.sh [--platform TAG]     TAG from scripts/platforms.json; default: this machine's
#
# Linux builds link with zig (PyPI's `ziglang`, driven by maturin --zig for the wheel and by
# cargo-zigbuild for the CLI and the .node addon) against the glibc baseline in platforms.json, so
# they run on RHEL 8, Amazon Linux 2, Debian 11, Ubuntu 20.04; the script checks the newest GLIBC
# symbol each binary needs. The tools go into a private venv under the target dir. Only
# linux-x64-gnu is built and tested on the project's machines; .github/workflows/release.yml runs
# this script for the others on their own runners.
#
# Env: CARGO_TARGET_DIR, DIST_DIR (default ./dist), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ROOT=$(pwd)
TARGET_DIR=$(target_dir)
DIST=${DIST_DIR:-$ROOT/dist}
PYTHON=${PYTHON:-python3}
START=$(date +%s)
step() { echo "== dist: $* ($(( $(date +%s) - START )) s)"; }
die() { echo "dist.sh: $*" >&2; exit 1; }

# The tools, pinned (cargo-zigbuild matches the one maturin embeds).
TOOLS="maturin==1.16.0 cargo-zigbuild==0.24.0 ziglang==0.17.1 auditwheel==6.8.2"

PLATFORM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --platform) PLATFORM="${2:?--platform needs a tag}"; shift 2 ;;
    --platform=*) PLATFORM="${1#*=}"; shift ;;
    *) die "unknown argument $1; usage: bash scripts/dist.sh [--platform TAG]" ;;
  esac
done
# The same tag the Node loader computes at run time (one rule: bindings-node/loader.js).
[ -n "$PLATFORM" ] || PLATFORM=$(node -p "require('./bindings-node/loader.js').platformTag()")

# platform field NAME: a field of this platform's entry in scripts/platforms.json ("" when absent).
field() {
  node -e '
    const [tag, name] = process.argv.slice(1);
    const p = require("./scripts/platforms.json").platforms.find((x) => x.tag === tag);
    if (!p) { console.error(`dist.sh: unknown platform ${tag}; see scripts/platforms.json`); process.exit(2); }
    process.stdout.write(String(p[name] ?? ""));' "$PLATFORM" "$1"
}
RUST_TARGET=$(field rust)
OS=$(field os)
LIBC=$(field libc)
GLIBC=$(field glibc)
WHEEL_COMPAT=$(field wheel)
VERSION=$(node -p "require('./package.json').version")
CARGO_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ "$VERSION" = "$CARGO_VERSION" ] || die "package.json has version $VERSION but Cargo.toml $CARGO_VERSION: make them equal"
EXE=""; [ "$OS" = win32 ] && EXE=".exe"
HOST=$(rustc -vV | sed -n 's/^host: //p')
step "anthropic-wif $VERSION for $PLATFORM ($RUST_TARGET${GLIBC:+, glibc $GLIBC}) into $DIST"

rm -rf "$DIST"
mkdir -p "$DIST"

# ---- tools -------------------------------------------------------------------------------------
TOOLS_VENV="$TARGET_DIR/dist-tools"
VBIN="$TOOLS_VENV/bin"; [ -d "$TOOLS_VENV/Scripts" ] && VBIN="$TOOLS_VENV/Scripts"
if [ "$(cat "$TOOLS_VENV/.tools" 2>/dev/null)" != "$TOOLS" ]; then
  step "tools: $TOOLS (a private venv, $TOOLS_VENV)"
  rm -rf "$TOOLS_VENV"
  "$PYTHON" -m venv "$TOOLS_VENV"
  VBIN="$TOOLS_VENV/bin"; [ -d "$TOOLS_VENV/Scripts" ] && VBIN="$TOOLS_VENV/Scripts"
  # shellcheck disable=SC2086
  "$VBIN/python" -m pip install -q --disable-pip-version-check $TOOLS
  echo "$TOOLS" > "$TOOLS_VENV/.tools"
fi
export PATH="$VBIN:$PATH"

# Zig for every Linux target: gnu pinned to the platform's glibc baseline, musl as is.
ZIG=0; ZIG_TARGET="$RUST_TARGET"; LINKER="the platform's own linker"
if [ "$OS" = linux ]; then
  ZIG=1
  [ -n "$GLIBC" ] && ZIG_TARGET="$RUST_TARGET.$GLIBC"
  LINKER="zig, $ZIG_TARGET"
fi

# ---- the CLI and the .node addon ---------------------------------------------------------------
build() { # build PACKAGE… : a release build for the platform (zig on Linux)
  local pkgs=() p
  for p in "$@"; do pkgs+=(-p "$p"); done
  if [ "$ZIG" = 1 ]; then
    cargo zigbuild --release --locked --target "$ZIG_TARGET" "${pkgs[@]}"
  else
    cargo build --release --locked --target "$RUST_TARGET" "${pkgs[@]}"
  fi
}
OUT="$TARGET_DIR/$RUST_TARGET/release"
if [ "$LIBC" = musl ]; then
  # A cdylib cannot link musl statically: the addon gets -crt-static (in its own target dir, so the
  # static CLI is not rebuilt each time), the CLI stays one static binary.
  step "cargo: the CLI (static musl)"
  build anthropic-wif-cli
  step "cargo: the Node addon (dynamic musl)"
  CARGO_TARGET_DIR="$TARGET_DIR/dist-addon" RUSTFLAGS="-C target-feature=-crt-static" build anthropic-wif-node
  ADDON_DIR="$TARGET_DIR/dist-addon/$RUST_TARGET/release"
else
  step "cargo: the CLI and the Node addon (release, $LINKER)"
  build anthropic-wif-cli anthropic-wif-node
  ADDON_DIR="$OUT"
fi
CLI="$OUT/anthropic-wif$EXE"
case "$OS" in
  linux) ADDON="$ADDON_DIR/libanthropic_wif_node.so" ;;
  darwin) ADDON="$ADDON_DIR/libanthropic_wif_node.dylib" ;;
  win32) ADDON="$ADDON_DIR/anthropic_wif_node.dll" ;;
esac
[ -f "$CLI" ] && [ -f "$ADDON" ] || die "the build produced no $CLI or $ADDON"

# newest_glibc FILE: the newest GLIBC_x.y symbol version FILE needs.
newest_glibc() {
  if command -v objdump >/dev/null; then objdump -T "$1"; else readelf --dyn-syms --wide "$1"; fi \
    | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1
}
if [ -n "$GLIBC" ]; then
  for f in "$CLI" "$ADDON"; do
    need=$(newest_glibc "$f")
    [ -n "$need" ] || die "found no GLIBC symbol versions in $f (objdump/readelf missing?)"
    newest=$(printf '%s\n%s\n' "$need" "$GLIBC" | sort -V | tail -n1)
    [ "$newest" = "$GLIBC" ] || die "$f needs GLIBC_$need, newer than the baseline $GLIBC"
    echo "   $(basename "$f"): newest GLIBC symbol $need (baseline $GLIBC)"
  done
fi
# The release CLI carries no test-only code: the emulator's control routes are not in it.
if grep -aq '/_emulator/' "$CLI"; then die "$CLI contains the emulator (/_emulator/ routes)"; fi

# ---- the CLI archive ---------------------------------------------------------------------------
step "the CLI archive"
NAME="anthropic-wif-$VERSION-$PLATFORM"
STAGE="$TARGET_DIR/dist-stage/$NAME"
rm -rf "$TARGET_DIR/dist-stage"
mkdir -p "$STAGE/completions" "$STAGE/man"
cp "$CLI" "$STAGE/"
cp LICENSE-MIT LICENSE-APACHE "$STAGE/"
cp cli/README.md "$STAGE/README.md"
# Completions and man pages come from the binary itself (a host build when cross-compiling).
if [ "$RUST_TARGET" = "$HOST" ]; then run_cli() { "$CLI" "$@"; }; else run_cli() { cargo run -q --locked -p anthropic-wif-cli -- "$@"; }; fi
run_cli completions bash > "$STAGE/completions/anthropic-wif.bash"
run_cli completions zsh > "$STAGE/completions/_anthropic-wif"
run_cli completions fish > "$STAGE/completions/anthropic-wif.fish"
run_cli completions powershell > "$STAGE/completions/_anthropic-wif.ps1"
run_cli man > "$STAGE/man/anthropic-wif.1"
for sub in token doctor exec daemon setup proxy probe completions man; do
  run_cli man "$sub" > "$STAGE/man/anthropic-wif-$sub.1"
done
if [ "$OS" = win32 ]; then ARCHIVE="$DIST/$NAME.zip"; else ARCHIVE="$DIST/$NAME.tar.gz"; fi
# Python's tarfile/zipfile: the same archive on every runner, owned by root:root, mtime of the commit.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)} \
"$PYTHON" - "$TARGET_DIR/dist-stage" "$NAME" "$ARCHIVE" <<'PY'
import os, sys, tarfile, zipfile
base, name, out = sys.argv[1:]
mtime = int(os.environ["SOURCE_DATE_EPOCH"])
paths = []
for d, dirs, files in os.walk(os.path.join(base, name)):
    dirs.sort()
    paths += [os.path.join(d, f) for f in sorted(files)]
if out.endswith(".zip"):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for p in paths:
            z.write(p, os.path.relpath(p, base))
else:
    def clean(t):
        t.uid = t.gid = 0
        t.uname = t.gname = "root"
        t.mtime = mtime
        t.mode = 0o755 if t.isdir() or os.access(os.path.join(base, t.name), os.X_OK) else 0o644
        return t
    with tarfile.open(out, "w:gz") as t:
        t.add(os.path.join(base, name), name, filter=clean)
PY

# ---- the Python wheel and the sdist ------------------------------------------------------------
step "python: the wheel (maturin, $LINKER${WHEEL_COMPAT:+, $WHEEL_COMPAT})"
# Its own target dir: maturin's zig linker wrapper differs from cargo-zigbuild's, and cargo would
# otherwise rebuild every crate each time one of them runs after the other.
WHEEL_ARGS=(--release --locked --target "$RUST_TARGET" --out "$DIST")
[ "$ZIG" = 1 ] && WHEEL_ARGS+=(--zig --compatibility "$WHEEL_COMPAT")
CARGO_TARGET_DIR="$TARGET_DIR/dist-wheel" maturin build "${WHEEL_ARGS[@]}"
WHEEL=$(ls "$DIST"/anthropic_wif-"$VERSION"-*.whl)
if [ "$OS" = linux ]; then
  step "python: auditwheel show"
  auditwheel show "$WHEEL" | tee "$TARGET_DIR/auditwheel.txt"
  case "$WHEEL_COMPAT" in
    manylinux2014) want="manylinux_2_17" ;;
    *) want="$WHEEL_COMPAT" ;;
  esac
  grep -q "\"${want}_" "$TARGET_DIR/auditwheel.txt" || die "auditwheel does not find $WHEEL ${want}-compliant"
fi
step "python: the sdist"
maturin sdist --out "$DIST"
SDIST="$DIST/anthropic_wif-$VERSION.tar.gz"
[ -f "$SDIST" ] || die "maturin sdist made no $SDIST"

# ---- npm ---------------------------------------------------------------------------------------
step "npm: the main package and the $PLATFORM package"
node scripts/dist-npm.js --platform "$PLATFORM" --addon "$ADDON" --stage "$TARGET_DIR/dist-npm" --out "$DIST"

# ---- contents, sizes, checksums ----------------------------------------------------------------
step "checking the contents"
"$PYTHON" - "$DIST" "$VERSION" "$PLATFORM" "$NAME" "$EXE" <<'PY'
import os, sys, tarfile, zipfile
dist, version, platform, name, exe = sys.argv[1:]
def names(path):
    if path.endswith(".zip") or path.endswith(".whl"):
        return set(zipfile.ZipFile(path).namelist())
    return set(tarfile.open(path).getnames())
def need(path, wanted):
    have = names(os.path.join(dist, path))
    missing = [w for w in wanted if not any(h == w or h.endswith("/" + w) for h in have)]
    if missing:
        sys.exit(f"dist.sh: {path} lacks {', '.join(missing)}")
files = os.listdir(dist)
wheel = next(f for f in files if f.endswith(".whl"))
need(wheel, [f"anthropic_wif-{version}.dist-info/licenses/LICENSE-MIT",
             f"anthropic_wif-{version}.dist-info/licenses/LICENSE-APACHE", "anthropic_wif/py.typed"])
need(f"anthropic_wif-{version}.tar.gz", ["LICENSE-MIT", "LICENSE-APACHE", "Cargo.lock", "pyproject.toml"])
archive = next(f for f in files if f.startswith(name + "."))
need(archive, [f"{name}/anthropic-wif{exe}", f"{name}/LICENSE-MIT", f"{name}/LICENSE-APACHE", f"{name}/README.md",
               f"{name}/completions/anthropic-wif.bash", f"{name}/completions/_anthropic-wif",
               f"{name}/completions/anthropic-wif.fish", f"{name}/man/anthropic-wif.1", f"{name}/man/anthropic-wif-token.1"])
print("   contents ok")
PY
"$PYTHON" - "$DIST" "$CLI" "$ADDON" <<'PY'
import hashlib, os, sys
dist, cli, addon = sys.argv[1:]
rows = []
with open(os.path.join(dist, "SHA256SUMS"), "w") as sums:
    for f in sorted(os.listdir(dist)):
        if f == "SHA256SUMS":
            continue
        data = open(os.path.join(dist, f), "rb").read()
        sums.write(f"{hashlib.sha256(data).hexdigest()}  {f}\n")
        rows.append((f, len(data)))
rows += [("(the CLI binary, unpacked)", os.path.getsize(cli)), ("(the .node addon, unpacked)", os.path.getsize(addon))]
for f, n in rows:
    print(f"   {n / 1e6:7.2f} MB  {f}")
PY
step "done: $DIST"
