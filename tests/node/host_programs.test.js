// The addon inside real host programs (issue 10, items 10, 11, 13): a program
// that writes process.env while the engine works, worker_threads with their own
// environment, and hundreds of providers parked on one cache file.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const { Worker } = require('node:worker_threads');

const { Provider } = require('anthropic-wif');
const { emulatorAndSandbox, startEmulator, federationOptions, federationEnv, PKG } = require('./_helpers.js');

const fixture = emulatorAndSandbox();

/** Runs `node -e script …args` with `env`; resolves { code, signal, stdout, stderr }. */
function runNode(script, args, env, timeoutMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------
// item 10: the host writes process.env while engine threads work

const RACE_SCRIPT = `
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const root = isMainThread ? process.argv[1] : workerData.root;
const stopAt = isMainThread ? Date.now() + Number(process.argv[2]) * 1000 : workerData.stopAt;
const wif = require(root);

async function loop(kind) {
  const counts = { doctor: 0, token: 0, denied: 0, notSent: 0, problems: [] };
  const provider = new wif.Provider({ noCache: true });
  while (Date.now() < stopAt) {
    const report = await wif.doctor();
    if (!report.identity || !report.identity.fetched) counts.problems.push(kind + ': identity variable read as unset');
    counts.doctor++;
    if (counts.doctor % 10 !== 1) continue; // doctor reads far more variables per call than an exchange
    try {
      await provider.getToken({ forceRefresh: true });
      counts.token++;
    } catch (e) {
      if (e instanceof wif.ExchangeDeniedError) counts.denied++;
      // The one JWT, once exchanged (or while another thread exchanges it), is never sent again.
      else if (e instanceof wif.IdentitySourceError && ['identity_token_consumed', 'identity_token_in_flight'].includes(e.errorCode)) counts.notSent++;
      else counts.problems.push(kind + ': ' + e.name + ': ' + e.message);
    }
  }
  return counts;
}

if (!isMainThread) {
  loop('worker').then((c) => parentPort.postMessage(c));
} else {
  (async () => {
    const workers = [1, 2, 3, 4].map(
      () => new Promise((resolve, reject) => {
        const w = new Worker(process.argv[3], { eval: true, workerData: { root, stopAt } });
        w.once('message', resolve);
        w.once('error', reject);
      }),
    );
    const mine = loop('main');
    let writes = 0;
    while (Date.now() < stopAt) {
      // New variables make setenv grow (and move) the C environment array.
      for (let j = 0; j < 2000; j++, writes++) process.env['ANTHROPIC_WIF_RACE_' + writes] = 'v'.repeat(writes % 97);
      for (const name of Object.keys(process.env)) if (name.startsWith('ANTHROPIC_WIF_RACE_')) delete process.env[name];
      await new Promise((r) => setImmediate(r)); // let the main thread's own calls progress
    }
    const all = [await mine, ...(await Promise.all(workers))];
    console.log(JSON.stringify({ all, writes }));
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
`;

test('writing process.env on the main thread while the main thread and four workers call doctor() and getToken()', async () => {
  const { emu, sb } = fixture;
  await emu.reset();
  const env = federationEnv(emu.baseURL, sb.env, { ANTHROPIC_IDENTITY_TOKEN: await emu.mintJwt() });
  // The workers run the same script: it is passed again as argv[3].
  const r = await runNode(RACE_SCRIPT, [PKG, '6', RACE_SCRIPT], env, 120_000);
  // The old engine called getenv on its own threads and died with SIGSEGV here.
  assert.equal(r.signal, null, `killed by ${r.signal}; stderr: ${r.stderr.slice(-2000)}`);
  assert.equal(r.code, 0, r.stderr.slice(-2000));
  const { all, writes } = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.ok(writes > 1000, `writes ${writes}`);
  for (const c of all) {
    assert.deepEqual(c.problems, []);
    assert.ok(c.doctor > 5, JSON.stringify(c));
  }
  assert.ok(all.some((c) => c.token >= 1), JSON.stringify(all));
  assert.ok(all.every((c) => c.denied === 0), `no JWT was presented twice: ${JSON.stringify(all)}`);
});

// ---------------------------------------------------------------------------
// item 11: a worker's own environment

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Anthropic = require(workerData.sdk).default;
const wif = require(workerData.root);
(async () => {
  try {
    const p = new wif.Provider();
    const { token } = await p.getToken();
    // The official SDK in the same worker reads ANTHROPIC_BASE_URL from the worker's env.
    const client = new Anthropic({ credentials: p.credentials(), maxRetries: 0 });
    const reply = await client.messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    parentPort.postMessage({ ok: true, token, reply: reply.type });
  } catch (e) {
    parentPort.postMessage({ ok: false, error: e.name + ': ' + e.message });
  }
})();
`;

function runWorker(env) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, {
      eval: true,
      env,
      workerData: { root: PKG, sdk: require.resolve('@anthropic-ai/sdk') },
    });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

/** The environment of one deployment: env federation against `e`, its own cache directory. */
async function deploymentEnv(e, sb, name) {
  const dir = sb.path(name);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const jwtFile = sb.path(name, 'jwt');
  fs.writeFileSync(jwtFile, await e.mintJwt());
  const base = {
    PATH: process.env.PATH || '',
    HOME: dir,
    XDG_CACHE_HOME: sb.path(name, 'cache'),
    ANTHROPIC_CONFIG_DIR: sb.path(name, 'config'),
  };
  return federationEnv(e.baseURL, base, { ANTHROPIC_IDENTITY_TOKEN_FILE: jwtFile });
}

/** Runs `fn` with the main thread's process.env replaced by `vars` (restored after). */
async function withMainEnv(vars, fn) {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) if (k.startsWith('ANTHROPIC_') || k.startsWith('XDG_')) delete process.env[k];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

test('a worker started with its own env uses that deployment, not the main thread\'s', async () => {
  const { emu, sb } = fixture;
  const other = await startEmulator();
  try {
    await emu.reset();
    const a = await deploymentEnv(emu, sb, 'deployment-a');
    const b = await deploymentEnv(other, sb, 'deployment-b');
    // Main thread configured for A, the worker for B.
    const r = await withMainEnv(a, () => runWorker(b));
    assert.ok(r.ok, r.error);
    assert.match(r.token, /^sk-ant-oat01-/);
    assert.equal(r.reply, 'message');
    const [sa, sbStats] = [await emu.stats(), await other.stats()];
    assert.equal(sa.token_requests, 0, 'deployment A saw no exchange');
    assert.equal(sbStats.exchanges, 1, 'the worker exchanged at B');
    assert.equal(sbStats.messages, 1, 'and the SDK in the worker called B with that token');

    // Main thread unconfigured: the worker's complete env is enough.
    fs.writeFileSync(b.ANTHROPIC_IDENTITY_TOKEN_FILE, await other.mintJwt());
    fs.rmSync(b.XDG_CACHE_HOME, { recursive: true, force: true });
    const r2 = await withMainEnv({}, () => runWorker(b));
    assert.ok(r2.ok, r2.error);
    assert.equal((await other.stats()).exchanges, 2);
    assert.equal((await emu.stats()).token_requests, 0);
  } finally {
    await other.stop();
  }
});

// ---------------------------------------------------------------------------
// item 13: hundreds of providers waiting for one cache file

test('600 providers waiting for one cache file leave an unrelated provider fast, and share one exchange', async () => {
  const { emu, sb } = fixture;
  await emu.reset();
  const jwtFile = sb.path('waiters-jwt');
  const options = (cache) =>
    federationOptions(emu, sb, { identityToken: { source: 'file', path: jwtFile }, credentialsPath: sb.path('waiters', cache) });
  async function unrelated(cache) {
    fs.writeFileSync(jwtFile, await emu.mintJwt());
    const started = performance.now();
    const { token } = await new Provider(options(cache)).getToken();
    assert.match(token, /^sk-ant-oat01-/);
    return (performance.now() - started) / 1000;
  }
  let unloaded = Infinity;
  for (let i = 0; i < 3; i++) unloaded = Math.min(unloaded, await unrelated(`alone-${i}.json`));

  fs.writeFileSync(jwtFile, await emu.mintJwt());
  await emu.faults([{ kind: 'delay', ms: 10_000 }]);
  const settled = new Set();
  const waiters = Array.from({ length: 600 }, () => new Provider(options('shared.json')).getToken());
  waiters.forEach((p, i) => p.then(() => settled.add(i), () => settled.add(i)));
  await new Promise((r) => setTimeout(r, 1500)); // all of them are queued for the lock by now
  assert.equal(settled.size, 0);
  const loaded = await unrelated('unrelated.json');
  const tokens = new Set((await Promise.all(waiters)).map((t) => t.token));
  assert.equal(tokens.size, 1, 'every waiter got the one token');
  // Three unloaded calls, the shared exchange, the unrelated one.
  assert.equal((await emu.stats()).exchanges, 5);
  const bound = Math.max(20 * unloaded, 2.0);
  assert.ok(loaded < bound, `unrelated provider took ${loaded.toFixed(3)} s under load, ${unloaded.toFixed(3)} s alone`);
});
