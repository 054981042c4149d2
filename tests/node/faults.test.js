// The cross-face fault matrix (tests/fault-matrix.json, docs/hardening-matrix.md)
// through the Node face: every case through `provider.getToken()`, each with its
// own emulator process (so hung connections and fault queues never cross cases),
// eight at a time with the slow time-out cases first. Plus a few rows with the
// official SDK as the caller, and the leak-prone rows again in a child process
// with ANTHROPIC_WIF_LOG=debug to check the engine's log lines too.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');

const { MATRIX, runCase, leaks } = require('./_faults.js');

const ONLY = process.env.FAULT_CASE;
const CONCURRENCY = Number(process.env.FAULT_CONCURRENCY || 8);

function report(r) {
  assert.ok(r.problems.length === 0, `${r.name} via ${r.via} (${r.secs.toFixed(1)} s):\n  - ${r.problems.join('\n  - ')}`);
}

/** Slow cases first so they overlap with the rest. */
const CASES = MATRIX.cases
  .filter((c) => !ONLY || c.name === ONLY)
  .slice()
  .sort((a, b) => (b.max_seconds || 0) - (a.max_seconds || 0));

/** Rows the hardening matrix asks to see through the official SDK too (the SDK must surface our error unchanged). */
const SDK_ROWS = ['503_burst_then_success', '429_without_retry_after', 'echo_401', 'accepts_and_never_answers'];

/** Rows whose bodies, headers or request echo a secret: run again with the engine logging at debug. */
const LOG_ROWS = [
  '503_burst_then_success',
  'echo_400_oauth_shape',
  'echo_400_anthropic_shape',
  'echo_401',
  'echo_503_every_time',
  'error_text_echoing_the_request',
  'request_id_header_with_a_token_in_it',
  'json_string',
  'token_type_mac',
  'access_token_with_a_space',
  'redirect_to_another_host',
  'non_json_502_then_success',
];

test('the fault matrix covers every case and names only known kinds', () => {
  assert.ok(MATRIX.cases.length >= 50, `${MATRIX.cases.length} cases`);
  const names = new Set(MATRIX.cases.map((c) => c.name));
  assert.equal(names.size, MATRIX.cases.length, 'case names are unique');
  for (const c of MATRIX.cases) {
    assert.ok(['token', 'error'].includes(c.expect.outcome), c.name);
    if (c.expect.outcome === 'error') assert.ok(c.expect.kind in MATRIX.kinds, c.name);
    assert.ok(c.faults || c.setup, c.name);
  }
  for (const n of [...SDK_ROWS, ...LOG_ROWS]) assert.ok(names.has(n), `${n} is a matrix case`);
});

test('fault matrix through provider.getToken() (and the SDK for some rows)', { concurrency: CONCURRENCY }, async (t) => {
  const jobs = [];
  for (const c of CASES) {
    jobs.push(t.test(`${c.name}: ${c.expect.outcome}${c.expect.kind ? ` [${c.expect.kind}]` : ''}`, async () => report(await runCase(c))));
  }
  for (const c of CASES.filter((x) => SDK_ROWS.includes(x.name))) {
    jobs.push(t.test(`${c.name} via new Anthropic({ credentials })`, async () => report(await runCase(c, { via: 'sdk' }))));
  }
  await Promise.all(jobs);
});

test('the leak-prone rows with ANTHROPIC_WIF_LOG=debug: no secret in the engine\'s log lines either', { skip: !!ONLY }, async () => {
  const script = `
    const { MATRIX, runCase } = require(${JSON.stringify(path.join(__dirname, '_faults.js'))});
    const names = ${JSON.stringify(LOG_ROWS)};
    Promise.all(MATRIX.cases.filter((c) => names.includes(c.name)).map((c) => runCase(c)))
      .then((rs) => process.stdout.write(JSON.stringify(rs)), (e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, ANTHROPIC_WIF_LOG: 'debug' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.on('exit', r));
  assert.equal(code, 0, `the child failed: ${err.slice(-2000)}`);
  const results = JSON.parse(out);
  assert.equal(results.length, LOG_ROWS.length);
  for (const r of results) report(r);
  // The log was on (so this checks something), and holds no JWT, token or canary.
  const lines = err.split('\n').filter((l) => l.startsWith('anthropic-wif:'));
  assert.ok(lines.length >= LOG_ROWS.length, `debug log lines: ${lines.length}`);
  const secrets = results.flatMap((r) => [r.jwt, r.token]).filter(Boolean);
  const found = leaks(err, secrets);
  assert.deepEqual(found, [], `secrets in the debug log: ${found.join(', ')}`);
});
