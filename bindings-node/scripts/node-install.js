#!/usr/bin/env node
// Build the native addon of the `anthropic-wif` npm package from source, for
// contributors and platforms without a prebuilt package.
//
// Needs only Node's standard library and `cargo`: npm runs a folder
// dependency's install script before that folder's own dependencies exist, so
// nothing from node_modules may be required here. The published package has
// no install script: its addon comes prebuilt in a platform package
// (loader.js); this script is the root package.json's `install` hook in a
// checkout, so `npm install` there and `npm install /path/to/checkout` build
// from source as before.
//
//   node bindings-node/scripts/node-install.js          npm `install` hook: in a git checkout,
//                                                        build (cargo is incremental); elsewhere
//                                                        (a copy of the sources) keep an addon that
//                                                        loads, else build.
//   node bindings-node/scripts/node-install.js --build  always build (release unless --debug)
//   node bindings-node/scripts/node-install.js --debug  build the debug profile
//   node bindings-node/scripts/node-install.js --check  exit 0 when a loadable from-source addon exists
//
// The binary lands in bindings-node/ as `anthropic-wif.<platform>-<arch>[-<libc>].node`,
// next to loader.js, which loads exactly that name before it looks for a platform package.
//
// Environment: ANTHROPIC_WIF_BUILD_PROFILE=debug|release, CARGO (the cargo to run),
// CARGO_TARGET_DIR (honoured by cargo).
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { platformTag, localBinaryPath } = require('../loader.js');

/** The repository root (the cargo workspace and the root package.json). */
const ROOT = path.resolve(__dirname, '..', '..');
const CRATE = 'anthropic-wif-node';
const USAGE = 'node bindings-node/scripts/node-install.js [--build] [--debug|--release] [--check]';

function binaryPath() {
  return localBinaryPath();
}

function say(msg) {
  process.stderr.write(`anthropic-wif: ${msg}\n`);
}

function fail(msg) {
  say(msg);
  process.exit(1);
}

/** Loads the addon in this (short-lived) process; returns an error message or null. */
function loadProblem(file) {
  if (!fs.existsSync(file)) return `${path.basename(file)} does not exist`;
  try {
    const addon = require(file);
    if (typeof addon.NativeProvider !== 'function') return `${path.basename(file)} is not the anthropic-wif addon`;
    return null;
  } catch (e) {
    return `${path.basename(file)} does not load here (${e && e.message})`;
  }
}

function cargoCommand() {
  return process.env.CARGO || 'cargo';
}

function haveCargo() {
  const r = spawnSync(cargoCommand(), ['--version'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Runs cargo build for the addon crate; returns the cdylib path cargo reports. */
function cargoBuild(profile) {
  const manifest = path.join(ROOT, 'Cargo.toml');
  const args = ['build', '-p', CRATE, '--manifest-path', manifest, '--message-format=json-render-diagnostics'];
  if (profile === 'release') args.push('--release');
  if (fs.existsSync(path.join(ROOT, 'Cargo.lock')) && !fs.existsSync(path.join(ROOT, '.git'))) {
    // A copy of the sources (not a git checkout): build exactly the locked dependencies.
    args.push('--locked');
  }
  say(`building the native addon: ${cargoCommand()} build -p ${CRATE}${profile === 'release' ? ' --release' : ''} (in ${ROOT})`);
  const r = spawnSync(cargoCommand(), args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 256 * 1024 * 1024,
    encoding: 'utf8',
  });
  if (r.error) fail(`cannot run ${cargoCommand()}: ${r.error.message}`);
  if (r.status !== 0) {
    fail(`cargo build failed (exit ${r.status}); the compiler output is above. Rust >= 1.89 is needed (rustup update).`);
  }
  let artifact = null;
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      continue;
    }
    if (msg.reason !== 'compiler-artifact' || !msg.target || !msg.target.kind.includes('cdylib')) continue;
    if (!String(msg.package_id).includes(CRATE)) continue;
    const lib = msg.filenames.find((f) => /\.(so|dylib|dll)$/.test(f));
    if (lib) artifact = lib;
  }
  if (!artifact) fail(`cargo build succeeded but reported no cdylib for ${CRATE}`);
  return artifact;
}

/** Copies the cdylib next to loader.js atomically (temp file + rename). */
function install(artifact) {
  const dest = binaryPath();
  const tmp = `${dest}.${process.pid}.tmp`;
  try {
    fs.copyFileSync(artifact, tmp);
    fs.renameSync(tmp, dest);
  } catch (e) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    fail(`cannot write ${dest}: ${e.message}`);
  }
  const problem = loadProblem(dest);
  if (problem) fail(`the freshly built addon does not load: ${problem}`);
  say(`built ${path.relative(process.cwd(), dest) || dest}`);
}

function main(argv) {
  const want = new Set(argv);
  for (const a of want) {
    if (!['--build', '--debug', '--release', '--check'].includes(a)) {
      fail(`unknown argument ${a}; usage: ${USAGE}`);
    }
  }
  const dest = binaryPath();
  if (want.has('--check')) {
    const problem = loadProblem(dest);
    if (problem) fail(problem);
    return;
  }
  let profile = process.env.ANTHROPIC_WIF_BUILD_PROFILE || 'release';
  if (want.has('--debug')) profile = 'debug';
  if (want.has('--release')) profile = 'release';
  if (profile !== 'debug' && profile !== 'release') {
    fail(`ANTHROPIC_WIF_BUILD_PROFILE must be debug or release, got ${JSON.stringify(profile)}`);
  }

  const isCheckout = fs.existsSync(path.join(ROOT, '.git'));
  const hasSources = fs.existsSync(path.join(ROOT, 'Cargo.toml')) && fs.existsSync(path.join(ROOT, 'bindings-node', 'Cargo.toml'));
  const forceBuild = want.has('--build') || want.has('--debug') || want.has('--release');

  const problem = loadProblem(dest);
  if (!forceBuild && !isCheckout && problem === null) {
    // A copy of the sources with an addon for this platform already built: nothing to do.
    return;
  }
  if (!hasSources) {
    fail(`no usable prebuilt binary (${problem}) and no Rust sources to build from in ${ROOT}`);
  }
  if (!haveCargo()) {
    if (problem === null && !forceBuild) {
      say(`cargo not found; keeping the existing ${path.basename(dest)} (it may be older than the sources)`);
      return;
    }
    fail(
      `no usable prebuilt binary for ${platformTag()} (${problem}) and cargo is not on PATH: ` +
        'install Rust >= 1.89 (https://rustup.rs), then run `npm rebuild anthropic-wif` ' +
        '(or `node bindings-node/scripts/node-install.js` in the checkout)',
    );
  }
  install(cargoBuild(profile));
}

module.exports = { binaryPath };

if (require.main === module) {
  main(process.argv.slice(2));
}
