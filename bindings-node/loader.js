// Finds and loads the native addon of the `anthropic-wif` npm package (the
// napi-rs layout users of @node-rs/* and lancedb know):
//
//   1. `anthropic-wif.<tag>.node` next to this file: an addon built from source
//      (`npm install` in a checkout runs scripts/node-install.js, which puts it here);
//   2. the platform package `anthropic-wif-<tag>` (an optionalDependency of the
//      published package, installed by npm only on the matching os/cpu/libc),
//      which holds nothing but that `.node` file.
//
// When neither loads, the error names the package that was missing and how to
// build from source. Needs only Node's standard library (the install script
// requires this file before any dependency exists).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

/** Prefix of the platform packages: `anthropic-wif-linux-x64-gnu`, … */
const PACKAGE_PREFIX = 'anthropic-wif-';

/** Is this Linux process running on glibc (else musl)? */
function isGlibc() {
  try {
    const report = process.report && process.report.getReport();
    const header = report && (typeof report === 'string' ? JSON.parse(report).header : report.header);
    if (header) return Boolean(header.glibcVersionRuntime);
  } catch {
    // fall through to the file-system check
  }
  // No report (very old Node, or reports disabled): musl's loader has a fixed name.
  try {
    return !fs.readdirSync('/lib').some((f) => f.startsWith('ld-musl-'));
  } catch {
    return true;
  }
}

/** `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, `win32-x64-msvc`, … */
function platformTag() {
  const { platform, arch } = process;
  if (platform === 'linux') return `${platform}-${arch}-${isGlibc() ? 'gnu' : 'musl'}`;
  if (platform === 'win32') return `${platform}-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** The addon's file name, in a platform package and next to this file. */
function binaryName(tag = platformTag()) {
  return `anthropic-wif.${tag}.node`;
}

/** The platform package that carries the addon for `tag`. */
function packageName(tag = platformTag()) {
  return `${PACKAGE_PREFIX}${tag}`;
}

/** Where a from-source build puts the addon (next to this file). */
function localBinaryPath(tag = platformTag()) {
  return path.join(__dirname, binaryName(tag));
}

/** The platform tags a prebuilt package is published for (the package's optionalDependencies). */
function prebuiltTags() {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, 'package.json'), 'utf8'));
    return Object.keys(pkg.optionalDependencies || {})
      .filter((n) => n.startsWith(PACKAGE_PREFIX))
      .map((n) => n.slice(PACKAGE_PREFIX.length));
  } catch {
    return []; // a checkout: bindings-node/ has no package.json of its own
  }
}

function describe(e) {
  return String((e && e.message) || e).split('\n')[0];
}

/** Loads the addon, or throws an Error that says what was missing and how to fix it. */
function loadAddon() {
  const tag = platformTag();
  const local = localBinaryPath(tag);
  if (fs.existsSync(local)) {
    try {
      return require(local);
    } catch (e) {
      throw new Error(
        `anthropic-wif: cannot load the native addon ${local}: ${describe(e)}. ` +
          'It was built from source for another machine or Node: rebuild it here with `npm rebuild anthropic-wif` ' +
          '(needs Rust >= 1.89 and the package sources, i.e. an install from a checkout).',
      );
    }
  }
  const pkg = packageName(tag);
  let problem;
  try {
    return require(pkg);
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`'${pkg}'`)) {
      problem = `the package ${pkg} is not installed`;
    } else {
      problem = `the package ${pkg} does not load here (${describe(e)})`;
    }
  }
  const tags = prebuiltTags();
  const hint =
    tags.length === 0
      ? ''
      : tags.includes(tag)
        ? ` ${pkg} is an optional dependency of anthropic-wif: npm skips it with --omit=optional (or --no-optional), ` +
          'or when a lock file was made on another platform; reinstall with `npm install anthropic-wif` ' +
          `(or add \`${pkg}\` to your dependencies).`
        : ` There is no prebuilt package for ${tag}; prebuilt: ${tags.join(', ')}.`;
  throw new Error(
    `anthropic-wif: no native addon for this platform (${tag}): ${problem}.${hint} ` +
      'To build it from source (Rust >= 1.89, https://rustup.rs): clone the anthropic-wif repository, ' +
      'then `npm install /path/to/the/checkout` (its install script runs `cargo build -p anthropic-wif-node` ' +
      `and places ${binaryName(tag)} in bindings-node/).`,
  );
}

module.exports = { platformTag, binaryName, packageName, localBinaryPath, loadAddon, PACKAGE_PREFIX };
