// The on-disk token cache is shared with the official Node SDK (@anthropic-ai/sdk), both ways: a token
// the SDK cached for a profile is used by `anthropic-wif token` without an exchange, and a token the CLI
// cached is used by the SDK's client for real API calls without an exchange.
//
// Run: npm install at the repository root (the SDK is a devDependency), build the debug binaries
// (cargo build -p anthropic-wif-cli -p anthropic-wif-emulator), then `node --test tests/e2e/`. ANTHROPIC_WIF_BIN and ANTHROPIC_WIF_EMULATOR override the binaries.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

const { default: Anthropic } = await import(process.env.ANTHROPIC_SDK_PATH ?? '@anthropic-ai/sdk');

// The binaries: $ANTHROPIC_WIF_BIN (the CLI under test) and $ANTHROPIC_WIF_EMULATOR, else the debug builds.
const { cliBinary, emulatorBinary } = createRequire(import.meta.url)('../node/_helpers.js');
const BIN = cliBinary();
const EMULATOR = emulatorBinary();
const MESSAGE = { model: 'claude-sonnet-5-5', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] };

let dir, emu, emuUrl;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wif-node-interop-'));
  emu = spawn(EMULATOR, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((ok, fail) => {
    createInterface({ input: emu.stdout }).once('line', ok);
    emu.once('exit', (c) => fail(new Error(`emulator exited ${c}`)));
  });
  emuUrl = JSON.parse(line).base_url;
  // The SDK resolves its credentials from the process environment: a sandboxed config dir only.
  for (const k of Object.keys(process.env)) if (k.startsWith('ANTHROPIC_')) delete process.env[k];
  process.env.ANTHROPIC_CONFIG_DIR = join(dir, 'config');
  process.env.HOME = join(dir, 'home');
  process.env.XDG_CACHE_HOME = join(dir, 'cache');
  mkdirSync(process.env.HOME);
});

after(() => {
  emu?.kill('SIGTERM');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function emulator(path, body) {
  const r = await fetch(emuUrl + path, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return r.json();
}

async function profile(name) {
  const ident = join(dir, `identity-${name}`);
  writeFileSync(ident, (await emulator('/_emulator/jwt', {})).jwt + '\n');
  const cfg = {
    version: '1.0',
    organization_id: '00000000-0000-4000-8000-000000000001',
    base_url: emuUrl,
    authentication: {
      type: 'oidc_federation',
      federation_rule_id: 'fdrl_01NodeInterop00000000000000',
      service_account_id: 'svac_01NodeInterop0000000000000',
      identity_token: { source: 'file', path: ident },
    },
  };
  mkdirSync(join(dir, 'config', 'configs'), { recursive: true });
  writeFileSync(join(dir, 'config', 'configs', `${name}.json`), JSON.stringify(cfg), { mode: 0o600 });
}

const credentials = (name) => JSON.parse(readFileSync(join(dir, 'config', 'credentials', `${name}.json`), 'utf8'));
const exchanges = async () => (await emulator('/_emulator/stats')).exchanges;
const cli = (...args) => JSON.parse(execFileSync(BIN, ['token', ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] }).toString());

test('a token cached by the Node SDK is used by the CLI', async () => {
  await profile('nodefirst');
  process.env.ANTHROPIC_PROFILE = 'nodefirst';
  try {
    const before = await exchanges();
    const msg = await new Anthropic().messages.create(MESSAGE);
    assert.ok(msg.content[0].text);
    assert.equal(await exchanges(), before + 1, 'the SDK exchanged once');
    const cached = credentials('nodefirst');
    const ours = cli('--profile', 'nodefirst');
    assert.deepEqual(ours, { access_token: cached.access_token, expires_at: cached.expires_at });
    assert.equal(await exchanges(), before + 1, 'the CLI used the SDK-cached token');
  } finally {
    delete process.env.ANTHROPIC_PROFILE;
  }
});

test('a token cached by the CLI is used by the Node SDK client', async () => {
  await profile('clifirst');
  const before = await exchanges();
  const ours = cli('--profile', 'clifirst');
  assert.equal(await exchanges(), before + 1);
  const path = join(dir, 'config', 'credentials', 'clifirst.json');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  process.env.ANTHROPIC_PROFILE = 'clifirst';
  try {
    const msg = await new Anthropic().messages.create(MESSAGE);
    assert.ok(msg.content[0].text);
    assert.equal(await exchanges(), before + 1, 'no exchange by the SDK: it used the shared cache');
    assert.equal(credentials('clifirst').access_token, ours.access_token);
  } finally {
    delete process.env.ANTHROPIC_PROFILE;
  }
});
