// Refresh under faults, in-process, with the official SDK as the caller
// (docs/hardening-matrix.md §2): a cached token inside the advisory window keeps
// serving while the token endpoint is down, and the endpoint is not hammered;
// inside the mandatory window the failure surfaces.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const Anthropic = require('@anthropic-ai/sdk').default;

const { Provider, EndpointUnavailableError } = require('anthropic-wif');
const { startEmulator, sandbox, federationOptions, assertNoSecrets, sleep } = require('./_helpers.js');

let emu;
let sb;
before(async () => {
  emu = await startEmulator(['--token-lifetime', '100']);
  sb = sandbox();
});
after(async () => {
  await emu.stop();
  sb.cleanup();
});

/** A token the emulator minted (valid there ~100 s), cached SDK-style with `left` seconds left. */
async function cachedToken(name, left) {
  const minted = await new Provider(federationOptions(emu, sb, { noCache: true })).getToken();
  const dir = sb.path(name);
  fs.mkdirSync(dir, { mode: 0o700 });
  const file = `${dir}/token.json`;
  const expiresAt = Math.floor(Date.now() / 1000) + left;
  // The official SDKs' cache format (no lifetime fields: the default windows, 120 s / 30 s, apply).
  fs.writeFileSync(file, JSON.stringify({ version: '1.0', type: 'oauth_token', access_token: minted.token, expires_at: expiresAt }), { mode: 0o600 });
  return { token: minted.token, expiresAt, file };
}

function ask(client) {
  return client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
}

test('advisory window, token endpoint down: every SDK call succeeds with the cached token; the endpoint sees at most 2 requests', async () => {
  const cached = await cachedToken('advisory', 100); // inside the 120 s advisory window, outside the 30 s mandatory one
  await emu.faults([{ kind: 'status', status: 503, count: 1000 }]);
  const before = await emu.stats();

  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: cached.file }));
  const credentials = provider.credentials();
  const served = [];
  const client = new Anthropic({
    baseURL: emu.baseURL,
    maxRetries: 0,
    credentials: async (o) => {
      const t = await credentials(o);
      served.push(t);
      return t;
    },
  });

  const started = Date.now();
  // In a row, then a burst, then again after the 5 s in-memory back-off has run out.
  for (let i = 0; i < 10; i++) assert.equal((await ask(client)).type, 'message');
  const burst = await Promise.all(Array.from({ length: 30 }, () => ask(client)));
  assert.ok(burst.every((r) => r.type === 'message'));
  assert.ok(Date.now() - started < 15_000, 'one quick refresh attempt, not the whole retry budget');
  await sleep(5_500);
  for (let i = 0; i < 5; i++) assert.equal((await ask(client)).type, 'message');
  // Other providers in this process sharing the cache file back off too (the back-off is recorded in its lock file).
  const other = await new Provider(federationOptions(emu, sb, { credentialsPath: cached.file })).getToken();
  assert.equal(other.token, cached.token);

  const after = await emu.stats();
  assert.equal(after.messages - before.messages, 45, 'every API call went through');
  assert.ok(served.length >= 1);
  for (const t of served) {
    assert.equal(t.token, cached.token, 'the still-valid cached token was served');
    assert.equal(t.expiresAt, cached.expiresAt);
  }
  const hits = after.token_requests - before.token_requests;
  assert.ok(hits >= 1, 'a refresh was attempted');
  assert.ok(hits <= 2, `the token endpoint was hit ${hits} times for 46 calls`);
  assert.equal(after.exchanges, before.exchanges, 'no exchange succeeded while down');
  await emu.reset();
});

test('mandatory window, token endpoint down: the SDK call fails with EndpointUnavailableError (the stale token is not served)', async () => {
  const cached = await cachedToken('mandatory', 20); // inside the 30 s mandatory window
  await emu.faults([{ kind: 'status', status: 503, count: 1000 }]);
  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: cached.file }));
  const client = new Anthropic({ baseURL: emu.baseURL, maxRetries: 0, credentials: provider.credentials() });
  await assert.rejects(ask(client), (e) => {
    assert.ok(e instanceof EndpointUnavailableError, `${e.name}: ${e.message}`);
    assert.equal(e.status, 503);
    for (const text of [e.message, String(e.stack)]) assertNoSecrets(text, [cached.token], 'the error');
    return true;
  });
  await emu.reset();
});
