// The official Node SDK (@anthropic-ai/sdk) as a client of `anthropic-wif proxy`, configured with only
// a base URL and a placeholder credential.
//
// Run: npm install @anthropic-ai/sdk at the repository root (the test scripts do), build the debug
// binaries (cargo build -p anthropic-wif-cli -p anthropic-wif-emulator), then `node --test tests/e2e/proxy_sdk.test.mjs`.
// ANTHROPIC_WIF_BIN and ANTHROPIC_WIF_EMULATOR override the binaries; ANTHROPIC_SDK_PATH where the SDK is imported from.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

const { default: Anthropic } = await import(process.env.ANTHROPIC_SDK_PATH ?? '@anthropic-ai/sdk');

// The binaries: $ANTHROPIC_WIF_BIN (the CLI under test) and $ANTHROPIC_WIF_EMULATOR, else the debug builds.
const { cliBinary, emulatorBinary } = createRequire(import.meta.url)('../node/_helpers.js');
const BIN = cliBinary();
const EMULATOR = emulatorBinary();
const RULE = 'fdrl_01TestRule000000000000000';
const ORG = '00000000-0000-4000-8000-000000000001';
const MESSAGES = [{ role: 'user', content: 'hello' }];

function start(bin, args, env) {
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const ready = new Promise((ok, fail) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (l) => ok(JSON.parse(l)));
    child.once('exit', (c) => fail(new Error(`${bin} ${args[0]} exited ${c}: ${stderr}`)));
  });
  return { child, ready, stderr: () => stderr };
}

let dir, env, emu, emuUrl, proxy, proxyUrl, jwtFile;

async function control(path, body) {
  const r = await fetch(emuUrl + path, body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return r.json();
}

async function rotateJwt() {
  const { jwt } = await control('/_emulator/jwt', {});
  writeFileSync(jwtFile + '.tmp', jwt);
  renameSync(jwtFile + '.tmp', jwtFile);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wif-proxy-node-'));
  env = { PATH: process.env.PATH, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), ANTHROPIC_CONFIG_DIR: join(dir, 'config') };
  emu = start(EMULATOR, ['--listen', '127.0.0.1:0', '--stream-delay-ms', '100'], env);
  emuUrl = (await emu.ready).base_url;
  jwtFile = join(dir, 'identity-token');
  await rotateJwt();
  proxy = start(BIN, ['proxy', '--listen', '127.0.0.1:0', '--base-url', emuUrl, '--federation-rule-id', RULE,
    '--organization-id', ORG, '--identity-token-file', jwtFile], env);
  proxyUrl = (await proxy.ready).base_url;
});

after(async () => {
  const exited = new Promise((ok) => proxy.child.once('exit', ok));
  proxy.child.kill('SIGTERM');
  assert.equal(await exited, 0);
  const log = proxy.stderr();
  assert.ok(!log.includes('sk-ant-oat01-') && !log.includes('eyJ'), 'no secret in the proxy log');
  emu.child.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

test('apiKey placeholder: messages.create goes through with a federated token', async () => {
  const client = new Anthropic({ baseURL: proxyUrl, apiKey: 'placeholder' });
  const msg = await client.messages.create({ model: 'claude-test', max_tokens: 16, messages: MESSAGES });
  assert.equal(msg.type, 'message');
  assert.match(msg.content[0].text, /emulator/);
});

test('authToken placeholder, 30 concurrent requests, one exchange in all', async () => {
  const client = new Anthropic({ baseURL: proxyUrl, authToken: 'placeholder' });
  const rs = await Promise.all(Array.from({ length: 30 }, () =>
    client.messages.create({ model: 'claude-test', max_tokens: 16, messages: MESSAGES })));
  assert.equal(new Set(rs.map((r) => r.id)).size, 30);
  const s = await control('/_emulator/stats');
  assert.equal(s.exchanges, 1);
  assert.equal(s.messages_unauthorized, 0);
});

test('a stream arrives event by event', async () => {
  const client = new Anthropic({ baseURL: proxyUrl, apiKey: 'placeholder' });
  const stream = await client.messages.create({ model: 'claude-test', max_tokens: 16, messages: MESSAGES, stream: true });
  const arrivals = [];
  for await (const ev of stream) arrivals.push([performance.now(), ev.type]);
  assert.equal(arrivals[0][1], 'message_start');
  assert.equal(arrivals.at(-1)[1], 'message_stop');
  assert.equal(arrivals.filter(([, t]) => t === 'content_block_delta').length, 5);
  // 100 ms pacing upstream; a buffering proxy would deliver everything at once.
  assert.ok(arrivals.at(-1)[0] - arrivals[0][0] >= 300, 'events spread over time');
});

test('a revoked token is replaced and the request replayed', async () => {
  const client = new Anthropic({ baseURL: proxyUrl, apiKey: 'placeholder', maxRetries: 0 });
  const before = await control('/_emulator/stats');
  await rotateJwt();
  await control('/_emulator/revoke', {});
  const msg = await client.messages.create({ model: 'claude-test', max_tokens: 16, messages: MESSAGES });
  assert.equal(msg.type, 'message');
  const s = await control('/_emulator/stats');
  assert.equal(s.exchanges, before.exchanges + 1);
});
