// The exchange runs on the engine's own runtime: the event loop keeps ticking.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');

const { Provider } = require('anthropic-wif');
const { emulatorAndSandbox, federationOptions } = require('./_helpers.js');

let emu;
let sb;
emulatorAndSandbox((fx) => ({ emu, sb } = fx));

test('the event loop keeps ticking during a slow exchange', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'delay', ms: 1500 }]);
  const provider = new Provider(federationOptions(emu, sb, { noCache: true }));
  let ticks = 0;
  let maxGap = 0;
  let last = Date.now();
  const timer = setInterval(() => {
    const now = Date.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks += 1;
  }, 10);
  const started = Date.now();
  const pending = provider.getToken();
  // getToken returned at once: the exchange is in flight, not done synchronously.
  assert.ok(Date.now() - started < 1000, 'getToken() returns a promise without waiting for the exchange');
  const { token } = await pending;
  clearInterval(timer);
  const elapsed = Date.now() - started;
  assert.match(token, /^sk-ant-oat01-/);
  assert.ok(elapsed >= 1400, `the exchange was slow (${elapsed} ms)`);
  // Generous bounds: ~150 ticks are expected; a blocked loop would give ~1.
  assert.ok(ticks >= 20, `the event loop ticked ${ticks} times during ${elapsed} ms`);
  assert.ok(maxGap < 1000, `no long stall of the event loop (longest gap ${maxGap} ms)`);
  assert.equal((await emu.stats()).exchanges, 1);
});

test('a slow exchange does not delay other promises or I/O on the loop', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'delay', ms: 1000 }]);
  const provider = new Provider(federationOptions(emu, sb, { noCache: true }));
  const order = [];
  const tokenDone = provider.getToken().then(() => order.push('token'));
  // Real loopback I/O from JS while the exchange is pending.
  const stats = await emu.stats();
  order.push('io');
  assert.equal(typeof stats.token_requests, 'number');
  await tokenDone;
  assert.deepEqual(order, ['io', 'token']);
});
