// Node face benchmarks, side by side in one run:
//   1. getToken() warm cost (a fresh token in memory): target <= 2 µs per call.
//   2. Cold exchange cost, CPU (user+sys of the whole process, all threads)
//      and wall time per exchange: our provider vs a pure-JS exchange with
//      `fetch` sending the same request, against the emulator on loopback.
//
// Usage (release addon; see bench/NODE.md):
//   npm run build && cargo build -p anthropic-wif-cli && node bench/node_bench.mjs [--json]
// Environment: BENCH_WARM_CALLS (default 1000000), BENCH_EXCHANGES (default 40).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { Provider } = require(ROOT);
const { binaryPath } = require(path.join(ROOT, 'bindings-node', 'scripts', 'node-install.js'));
const { startEmulator, sandbox, RULE, ORG, SVAC } = require(path.join(ROOT, 'tests', 'node', '_helpers.js'));

const WARM_CALLS = Number(process.env.BENCH_WARM_CALLS || 1_000_000);
const EXCHANGES = Number(process.env.BENCH_EXCHANGES || 40);
const WARMUP = 5;
const asJson = process.argv.includes('--json');

const profile = require(binaryPath()).buildProfile();
const emu = await startEmulator(['--token-lifetime', '3600']);
const sb = sandbox();
const jwtFile = sb.path('identity-token');
fs.writeFileSync(jwtFile, '');

function options(extra = {}) {
  return {
    baseURL: emu.baseURL,
    federationRuleId: RULE,
    organizationId: ORG,
    serviceAccountId: SVAC,
    identityToken: { source: 'file', path: jwtFile },
    env: sb.env,
    ...extra,
  };
}

const cpuMicros = (u) => u.user + u.system;

// ---- 1. warm getToken() ----------------------------------------------------
async function warm() {
  fs.writeFileSync(jwtFile, await emu.mintJwt());
  const provider = new Provider(options({ noCache: true }));
  await provider.getToken(); // the one exchange; everything after is warm
  for (let i = 0; i < 100_000; i++) await provider.getToken(); // JIT warm-up

  // (a) the call itself: getToken() returning its already-resolved promise.
  let sink = 0;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < WARM_CALLS; i++) {
    const p = provider.getToken();
    if (p === null) sink++;
  }
  const callNs = Number(process.hrtime.bigint() - t0) / WARM_CALLS;
  await provider.getToken();

  // (b) awaited: the call plus one microtask turn, as a caller sees it.
  t0 = process.hrtime.bigint();
  for (let i = 0; i < WARM_CALLS; i++) {
    const t = await provider.getToken();
    if (t.expiresAt === 0) sink++;
  }
  const awaitNs = Number(process.hrtime.bigint() - t0) / WARM_CALLS;

  // (c) through the credentials function the SDK calls.
  const creds = provider.credentials();
  t0 = process.hrtime.bigint();
  for (let i = 0; i < WARM_CALLS; i++) {
    const t = await creds();
    if (t.expiresAt === 0) sink++;
  }
  const credsNs = Number(process.hrtime.bigint() - t0) / WARM_CALLS;
  if (sink) console.error('(ignore)', sink);
  return { callNs, awaitNs, credsNs };
}

// ---- 2. cold exchanges -------------------------------------------------------
async function mintMany(n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await emu.mintJwt());
  return out;
}

/** The same request our engine sends (docs/design.md §1), with fetch. */
async function fetchExchange() {
  const assertion = fs.readFileSync(jwtFile, 'utf8').trim();
  const res = await fetch(`${emu.baseURL}/v1/oauth/token`, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/json',
      'anthropic-beta': 'oauth-2025-04-20,oidc-federation-2026-04-01',
      'user-agent': 'bench-fetch/1',
    },
    body: JSON.stringify({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion,
      federation_rule_id: RULE,
      organization_id: ORG,
      service_account_id: SVAC,
    }),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`fetch exchange: ${res.status}`);
  const body = JSON.parse(text);
  if (typeof body.access_token !== 'string' || body.token_type !== 'Bearer') throw new Error('bad token response');
  return { token: body.access_token, expiresAt: Math.floor(Date.now() / 1000) + Math.trunc(body.expires_in) };
}

async function measure(name, run) {
  const jwts = await mintMany(WARMUP + EXCHANGES);
  const cpu = [];
  const wall = [];
  for (let i = 0; i < jwts.length; i++) {
    fs.writeFileSync(jwtFile, jwts[i]);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const t = await run();
    const dt = Number(process.hrtime.bigint() - t0) / 1e3;
    const dc = cpuMicros(process.cpuUsage(c0));
    if (!t.token.startsWith('sk-ant-oat01-')) throw new Error(`${name}: no token`);
    if (i >= WARMUP) {
      cpu.push(dc);
      wall.push(dt);
    }
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return { name, cpuMedianUs: med(cpu), cpuMeanUs: mean(cpu), wallMedianUs: med(wall), n: cpu.length };
}

async function cold() {
  const ours = new Provider(options({ noCache: true }));
  const oursDisk = new Provider(options({ credentialsPath: sb.path('cache', 'bench.json') }));
  const rows = [];
  // Interleave nothing: each variant runs its own series after its own warm-up.
  rows.push(await measure('anthropic-wif getToken({forceRefresh}) noCache', () => ours.getToken({ forceRefresh: true })));
  rows.push(await measure('anthropic-wif getToken({forceRefresh}) + disk cache', () => oursDisk.getToken({ forceRefresh: true })));
  rows.push(await measure('pure JS: fetch + JSON', fetchExchange));
  return rows;
}

try {
  const w = await warm();
  const rows = await cold();
  const result = {
    node: process.version,
    addon: profile,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0] && os.cpus()[0].model,
    warm: { calls: WARM_CALLS, getTokenCallNs: w.callNs, awaitGetTokenNs: w.awaitNs, awaitCredentialsNs: w.credsNs, targetNs: 2000 },
    cold: rows,
  };
  if (asJson) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`anthropic-wif Node bench — node ${process.version}, addon ${profile} build, ${result.cpus} CPUs (${result.cpuModel})`);
    if (profile !== 'release') console.log('  NOTE: debug addon; run `npm run build` for release figures');
    console.log(`\nwarm getToken(), ${WARM_CALLS} calls (target <= 2000 ns):`);
    console.log(`  getToken() call                  ${w.callNs.toFixed(0).padStart(6)} ns/call  ${w.callNs <= 2000 ? 'OK' : 'OVER TARGET'}`);
    console.log(`  await getToken()                 ${w.awaitNs.toFixed(0).padStart(6)} ns/call`);
    console.log(`  await credentials()()            ${w.credsNs.toFixed(0).padStart(6)} ns/call`);
    console.log(`\ncold exchange against the emulator on loopback, ${EXCHANGES} each after ${WARMUP} warm-up:`);
    console.log('  variant                                              CPU median  CPU mean   wall median');
    for (const r of rows) {
      console.log(
        `  ${r.name.padEnd(52)} ${(r.cpuMedianUs / 1000).toFixed(2).padStart(7)} ms ${(r.cpuMeanUs / 1000).toFixed(2).padStart(7)} ms ${(r.wallMedianUs / 1000).toFixed(2).padStart(8)} ms`,
      );
    }
    console.log('  (CPU = user+sys of this whole process, all threads; the emulator runs in its own process)');
  }
} finally {
  await emu.stop();
  sb.cleanup();
}
