// Shared helpers for the Node tests: a real emulator process on loopback
// (`wif-emulator`), a sandbox directory, and provider options that point at
// both. Not a test file (node --test only picks *.test.* files).
//
// The package under test is whatever `require('anthropic-wif')` resolves to:
// this checkout (a self-reference) when the tests run in place, the installed
// package when scripts/test-node.sh --packages copies them into a fresh app.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..');
/** The directory of the anthropic-wif package under test (see above). */
const PKG = path.dirname(require.resolve('anthropic-wif/package.json'));
const RULE = 'fdrl_01TestRule000000000000000';
const ORG = '00000000-0000-4000-8000-000000000001';
const SVAC = 'svac_01TestServiceAccount0000000';

/** `$<envVar>`, else the debug build `name` under $CARGO_TARGET_DIR (or ./target): scripts/lib.sh's rule. */
function binary(envVar, name) {
  if (process.env[envVar]) return process.env[envVar];
  const target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  const exe = process.platform === 'win32' ? '.exe' : '';
  return path.join(target, 'debug', `${name}${exe}`);
}

/** The `anthropic-wif` CLI binary under test ($ANTHROPIC_WIF_BIN). */
function cliBinary() {
  return binary('ANTHROPIC_WIF_BIN', 'anthropic-wif');
}

/** The emulator binary ($ANTHROPIC_WIF_EMULATOR): test tooling, not part of the CLI. */
function emulatorBinary() {
  return binary('ANTHROPIC_WIF_EMULATOR', 'wif-emulator');
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGTERM');
});

/**
 * Starts `wif-emulator --listen 127.0.0.1:0 …args` and waits for its
 * `{"base_url": …}` line. Returns a handle with the control endpoints.
 */
async function startEmulator(args = []) {
  const bin = emulatorBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`the emulator binary ${bin} is missing: run \`cargo build -p anthropic-wif-emulator\` (scripts/test-node.sh does)`);
  }
  const child = spawn(bin, ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const rl = readline.createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the emulator did not print its base_url within 30 s')), 30_000);
    rl.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the emulator exited (${code}) before it was ready`));
    });
  });
  rl.on('line', () => {}); // drain any later output
  const baseURL = JSON.parse(first).base_url;
  if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(baseURL)) throw new Error(`unexpected base_url ${first}`);

  async function control(method, p, body) {
    const res = await fetch(baseURL + p, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  return {
    baseURL,
    child,
    stats: () => control('GET', '/_emulator/stats'),
    requests: () => control('GET', '/_emulator/requests'),
    mintJwt: async (claims = {}) => (await control('POST', '/_emulator/jwt', claims)).jwt,
    faults: (faults) => control('POST', '/_emulator/faults', { faults }),
    revoke: () => control('POST', '/_emulator/revoke'),
    reset: () => control('POST', '/_emulator/reset'),
    config: (c) => control('POST', '/_emulator/config', c),
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A temp directory with a HOME, config and cache dirs, and a clean environment for them. */
function sandbox() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'anthropic-wif-node-'));
  for (const d of ['home', 'config', 'cache']) fs.mkdirSync(path.join(dir, d), { mode: 0o700 });
  const env = {
    PATH: process.env.PATH || '',
    HOME: path.join(dir, 'home'),
    XDG_CACHE_HOME: path.join(dir, 'cache'),
    ANTHROPIC_CONFIG_DIR: path.join(dir, 'config'),
  };
  return {
    dir,
    env,
    path: (...rel) => path.join(dir, ...rel),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * For a test file: an emulator and a sandbox started before its tests and
 * stopped after them (node:test hooks). Returns `{ emu, sb }`, filled in by the hook,
 * which then calls `onReady(fixture)` when given (to set a file's own variables).
 */
function emulatorAndSandbox(onReady) {
  const { before, after } = require('node:test');
  const fixture = { emu: null, sb: null };
  before(async () => {
    fixture.emu = await startEmulator();
    fixture.sb = sandbox();
    if (onReady) onReady(fixture);
  });
  after(async () => {
    await fixture.emu.stop();
    fixture.sb.cleanup();
  });
  return fixture;
}

/**
 * An identity-token source that asks the emulator for a fresh single-use JWT
 * at every exchange (a real program, run by the engine without a shell).
 */
function jwtCommand(baseURL) {
  const script =
    "fetch(process.argv[1] + '/_emulator/jwt', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })" +
    '.then((r) => r.json()).then((j) => process.stdout.write(j.jwt))' +
    '.catch((e) => { process.stderr.write(String(e)); process.exit(1); });';
  return { source: 'command', command: [process.execPath, '-e', script, baseURL] };
}

/** Provider options for federation against the emulator, isolated in the sandbox. */
function federationOptions(emu, sb, extra = {}) {
  return {
    baseURL: emu.baseURL,
    federationRuleId: RULE,
    organizationId: ORG,
    serviceAccountId: SVAC,
    identityToken: jwtCommand(emu.baseURL),
    credentialsPath: sb.path('credentials', 'token.json'),
    env: sb.env,
    ...extra,
  };
}

/**
 * An environment that configures federation against `baseURL` the way the
 * CLI reads it (ANTHROPIC_* variables), on top of `base` (e.g. a sandbox's env).
 */
function federationEnv(baseURL, base, extra = {}) {
  return {
    ...base,
    ANTHROPIC_BASE_URL: baseURL,
    ANTHROPIC_FEDERATION_RULE_ID: RULE,
    ANTHROPIC_ORGANIZATION_ID: ORG,
    ANTHROPIC_SERVICE_ACCOUNT_ID: SVAC,
    ...extra,
  };
}

/** Throws when `text` holds anything that looks like an access token or a JWT, or one of `secrets`. */
function assertNoSecrets(text, secrets = [], what = 'text') {
  for (const s of secrets) {
    if (s && text.includes(s)) throw new Error(`a secret leaked into ${what}: ${text}`);
  }
  if (/sk-ant-[A-Za-z0-9]/.test(text)) throw new Error(`an access token leaked into ${what}: ${text}`);
  if (/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\./.test(text)) throw new Error(`a JWT leaked into ${what}: ${text}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = {
  ROOT,
  PKG,
  RULE,
  ORG,
  SVAC,
  cliBinary,
  emulatorBinary,
  startEmulator,
  sandbox,
  emulatorAndSandbox,
  jwtCommand,
  federationOptions,
  federationEnv,
  assertNoSecrets,
  sleep,
};
