// The official Node SDK (@anthropic-ai/sdk) as a client of `anthropic-wif proxy`, configured with only
// a base URL and a placeholder credential.
//
// Run: npm install @anthropic-ai/sdk at the repository root (the test scripts do), build the debug
// binaries (cargo build -p anthropic-wif-cli -p anthropic-wif-emulator), then `node --test tests/e2e/proxy_sdk.test.mjs`.
// ANTHROPIC_WIF_BIN and ANTHROPIC_WIF_EMULATOR override the binaries; ANTHROPIC_SDK_PATH where the SDK is imported from.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';

import { proxyStack } from './proxy_stack.mjs';

const { default: Anthropic } = await import(process.env.ANTHROPIC_SDK_PATH ?? '@anthropic-ai/sdk');

const MESSAGES = [{ role: 'user', content: 'hello' }];

let stack, proxyUrl, control, rotateJwt;

before(async () => {
  stack = await proxyStack({ emulatorArgs: ['--stream-delay-ms', '100'] });
  ({ proxyUrl, control, rotateJwt } = stack);
});

after(async () => {
  const { code, log } = await stack.close();
  assert.equal(code, 0);
  // A JWT is `eyJ…` with dots; random request ids in the log may contain "eyJ" but never a dot.
  assert.ok(!log.includes('sk-ant-oat01-') && !/eyJ[\w-]+\.[\w-]+/.test(log), 'no secret in the proxy log');
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
