// Loading the addon in several worker_threads at once, and tearing workers down mid-exchange.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');

const { Provider } = require('anthropic-wif');
const { emulatorAndSandbox, federationOptions, PKG } = require('./_helpers.js');

let emu;
let sb;
emulatorAndSandbox((fx) => ({ emu, sb } = fx));

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const wif = require(workerData.root);
(async () => {
  try {
    const p = new wif.Provider(workerData.options);
    const a = await p.getToken();
    const b = await p.getToken();
    let configError = null;
    try { new wif.Provider({ nope: 1 }); } catch (e) { configError = e instanceof wif.ConfigurationError ? e.kind : String(e); }
    parentPort.postMessage({ ok: true, token: a.token, expiresAt: a.expiresAt, same: a.token === b.token, configError });
  } catch (e) {
    parentPort.postMessage({ ok: false, error: e.name + ': ' + e.message });
  }
})();
`;

function runWorker(options) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { root: PKG, options } });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => {
      if (code !== 0) reject(new Error(`worker exited with ${code}`));
    });
  });
}

test('four workers load the addon and share one exchange through the disk cache', async () => {
  await emu.reset();
  const options = federationOptions(emu, sb, { credentialsPath: sb.path('workers', 'token.json') });
  const results = await Promise.all([1, 2, 3, 4].map(() => runWorker(options)));
  for (const r of results) {
    assert.ok(r.ok, r.error);
    assert.match(r.token, /^sk-ant-oat01-/);
    assert.ok(r.same);
    assert.equal(r.configError, 'config', 'error classes work inside a worker');
  }
  assert.equal(new Set(results.map((r) => r.token)).size, 1, 'all workers got the one token');
  assert.equal((await emu.stats()).exchanges, 1);
  // The main thread, with its own provider on the same cache file, joins too.
  const mine = await new Provider(options).getToken();
  assert.equal(mine.token, results[0].token);
  assert.equal((await emu.stats()).exchanges, 1);
});

test('terminating a worker while its exchange is in flight is safe', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'delay', ms: 800, count: 3 }]);
  const options = federationOptions(emu, sb, { noCache: true });
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const wif = require(workerData.root);
    const p = new wif.Provider(workerData.options);
    p.getToken().then(() => parentPort.postMessage('done'), () => parentPort.postMessage('failed'));
    parentPort.postMessage('started');
  `;
  for (let i = 0; i < 3; i++) {
    const w = new Worker(src, { eval: true, workerData: { root: PKG, options } });
    await new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await new Promise((r) => setTimeout(r, 100));
    await w.terminate();
  }
  // Let the in-flight exchanges finish and settle into torn-down environments.
  await new Promise((r) => setTimeout(r, 1500));
  await emu.reset();
  const { token } = await new Provider(options).getToken();
  assert.match(token, /^sk-ant-oat01-/);
});
