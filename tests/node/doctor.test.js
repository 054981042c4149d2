// doctor(): the core diagnosis from Node, the same report as `anthropic-wif doctor --json`.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

const { doctor, Provider, ConfigurationError } = require('anthropic-wif');
const { emulatorAndSandbox, sandbox, federationOptions, assertNoSecrets, cliBinary, RULE, ORG, SVAC } = require('./_helpers.js');

let emu;
let sb;
emulatorAndSandbox((fx) => ({ emu, sb } = fx));

let n = 0;
/** A fresh JWT from the emulator in a file, and options reading it (own cache file). */
async function withJwtFile(claims = {}, extra = {}) {
  const jwt = await emu.mintJwt(claims);
  const dir = sb.path(`d${++n}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  const file = `${dir}/identity-token`;
  fs.writeFileSync(file, jwt, { mode: 0o600 });
  const options = federationOptions(emu, sb, {
    identityToken: { source: 'file', path: file },
    credentialsPath: `${dir}/cache/token.json`,
    ...extra,
  });
  return { jwt, file, dir, options };
}

const codes = (report, severity) => report.findings.filter((f) => !severity || f.severity === severity).map((f) => f.code);

function checkShape(report) {
  assert.equal(report.version, 1);
  for (const k of ['healthy', 'exit_code', 'errors', 'warnings', 'checked_at', 'config', 'ids', 'exchange', 'findings']) {
    assert.ok(k in report, `report.${k}`);
  }
  assert.equal(typeof report.healthy, 'boolean');
  assert.equal(report.errors, codes(report, 'error').length);
  assert.equal(report.warnings, codes(report, 'warning').length);
  assert.equal(report.healthy, report.errors === 0);
  for (const f of report.findings) {
    assert.match(f.code, /^[a-z_]+$/);
    assert.ok(['error', 'warning', 'info'].includes(f.severity));
    assert.ok(f.message.length > 0 && f.fix.length > 0, JSON.stringify(f));
  }
}

test('a healthy configuration: resolves the full report, sends nothing, writes nothing', async () => {
  await emu.reset();
  const { jwt, dir, options } = await withJwtFile();
  const report = await doctor(options);
  checkShape(report);
  assert.equal(report.healthy, true, JSON.stringify(report.findings));
  assert.equal(report.exit_code, 0);
  assert.equal(report.errors, 0);
  assert.equal(report.config.ok, true);
  assert.equal(report.config.step, 'explicit');
  assert.equal(report.config.resolution, 'federation');
  const rule = report.config.fields.find((f) => f.name === 'federation_rule_id');
  assert.equal(rule.value, RULE);
  assert.equal(rule.origin.kind, 'explicit');
  assert.equal(rule.origin.name, 'option federationRuleId', 'origins spell the option as Node does');
  assert.ok(report.ids.length >= 3 && report.ids.every((i) => i.ok), JSON.stringify(report.ids));
  assert.equal(report.identity.source, 'file');
  assert.equal(report.identity.fetched, true);
  assert.equal(report.identity.size_bytes, jwt.length);
  assert.equal(report.identity.token.iss.length > 0, true);
  assert.deepEqual(report.identity.token.aud, ['https://api.anthropic.com']);
  assert.equal(report.identity.token.jti_present, true);
  assert.ok(report.identity.token.remaining_s > 0);
  assert.equal(report.cache.state, 'missing');
  assert.deepEqual(report.exchange, { requested: false, performed: false });
  assert.equal(codes(report, 'warning').length, report.warnings);

  assertNoSecrets(JSON.stringify(report), [jwt, jwt.split('.')[2]], 'the doctor report');
  assert.equal((await emu.stats()).token_requests, 0, 'a plain diagnosis sends nothing');
  assert.ok(!fs.existsSync(`${dir}/cache`), 'a plain diagnosis writes nothing (no cache, no lock)');
  // The JWT was only fetched, not consumed: the provider can still exchange it.
  const t = await new Provider(options).getToken();
  assert.match(t.token, /^sk-ant-oat01-/);
});

test('the same report as `anthropic-wif doctor --json` for the same environment', async () => {
  const { file } = await withJwtFile();
  const env = {
    ...sb.env,
    ANTHROPIC_BASE_URL: emu.baseURL,
    ANTHROPIC_FEDERATION_RULE_ID: RULE,
    ANTHROPIC_ORGANIZATION_ID: ORG,
    ANTHROPIC_SERVICE_ACCOUNT_ID: SVAC,
    ANTHROPIC_IDENTITY_TOKEN_FILE: file,
  };
  const [node, cliText] = await Promise.all([doctor({ env }), Promise.resolve(execFileSync(cliBinary(), ['doctor', '--json'], { env, encoding: 'utf8' }))]);
  const cli = JSON.parse(cliText);
  const volatile = (r) => {
    const c = structuredClone(r);
    delete c.checked_at;
    if (c.identity && c.identity.token) delete c.identity.token.remaining_s;
    return c;
  };
  // Same fields, same values, same key order.
  assert.equal(JSON.stringify(volatile(node)), JSON.stringify(volatile(cli)));
  assert.equal(node.config.step, 'env_federation');
  assert.ok(Math.abs(node.checked_at - cli.checked_at) <= 5);
});

test('warnings: wrong audience, long-lived token; expectedAudience changes the check', async () => {
  const { jwt, options } = await withJwtFile({ aud: 'https://not-anthropic.example', ttl: 7200 });
  const report = await doctor(options);
  checkShape(report);
  assert.equal(report.healthy, true, 'warnings do not make it unhealthy');
  assert.equal(report.exit_code, 0);
  assert.ok(codes(report, 'warning').includes('jwt_audience_mismatch'), JSON.stringify(report.findings));
  assert.ok(codes(report, 'warning').includes('jwt_long_lived'), JSON.stringify(report.findings));
  assert.ok(report.warnings >= 2);
  const mismatch = report.findings.find((f) => f.code === 'jwt_audience_mismatch');
  assert.match(mismatch.message, /not-anthropic\.example/);
  assert.equal(report.identity.expected_audience, 'https://api.anthropic.com');
  assertNoSecrets(JSON.stringify(report), [jwt], 'the doctor report');

  const told = await doctor(options, { expectedAudience: 'https://not-anthropic.example' });
  assert.equal(told.identity.expected_audience, 'https://not-anthropic.example');
  assert.ok(!codes(told).includes('jwt_audience_mismatch'), JSON.stringify(told.findings));
});

test('errors: an expired identity token is an identity error (exit code 3), --exchange skipped', async () => {
  await emu.reset();
  const { jwt, options } = await withJwtFile({ ttl: -120 });
  const report = await doctor(options, { exchange: true });
  checkShape(report);
  assert.equal(report.healthy, false);
  assert.equal(report.exit_code, 3);
  const expired = report.findings.find((f) => f.code === 'jwt_expired');
  assert.ok(expired, JSON.stringify(report.findings));
  assert.equal(expired.severity, 'error');
  assert.equal(expired.kind, 'identity');
  assert.ok(report.identity.token.remaining_s < 0);
  assert.equal(report.exchange.requested, true);
  assert.equal(report.exchange.performed, false);
  assert.ok(codes(report).includes('exchange_skipped'));
  assert.equal((await emu.stats()).token_requests, 0, 'nothing sent after an error');
  assertNoSecrets(JSON.stringify(report), [jwt], 'the doctor report');
});

test('exchange: true makes one exchange: request id, masked token, cached for the next caller', async () => {
  await emu.reset();
  const { jwt, options } = await withJwtFile();
  const report = await doctor(options, { exchange: true });
  checkShape(report);
  assert.equal(report.healthy, true, JSON.stringify(report.findings));
  const ex = report.exchange;
  assert.equal(ex.requested, true);
  assert.equal(ex.performed, true);
  assert.equal(ex.ok, true);
  assert.equal(ex.status, 200);
  assert.match(ex.request_id, /^req_/);
  assert.equal(ex.scope, 'user:inference');
  assert.ok(ex.granted_lifetime_s > 0);
  assert.match(ex.token_masked, /^sk-ant-oat01-…[A-Za-z0-9_-]{4}$/);
  assert.equal(ex.cached_in, options.credentialsPath);
  assert.equal(report.cache.state, 'valid');
  assert.equal((await emu.stats()).exchanges, 1);
  // The emulator's log has the request id the report gives.
  const reqs = await emu.requests();
  const list = Array.isArray(reqs) ? reqs : reqs.requests;
  assert.equal(list.length, 1);
  assert.equal(list[0].body.assertion, jwt, 'the diagnosed token was the one exchanged');

  // The next provider uses the cached token (the JWT in the file is spent), and the mask is its tail.
  const t = await new Provider(options).getToken();
  assert.equal((await emu.stats()).exchanges, 1);
  assert.ok(t.token.endsWith(ex.token_masked.slice(-4)));
  assert.equal(t.expiresAt, ex.expires_at);
  // Neither the access token nor the JWT is in the report: only the masked form.
  const text = JSON.stringify(report);
  assert.ok(!text.includes(t.token));
  assert.equal(text.split('sk-ant-').length - 1, 1, 'one sk-ant- string: the masked token');
  assertNoSecrets(text.replace(ex.token_masked, '(masked)'), [jwt, t.token], 'the doctor report');
});

test('exchange: a denied exchange is an exchange_failed finding with status and request id (exit code 4)', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'echo', status: 401 }]);
  const { jwt, options } = await withJwtFile();
  const report = await doctor(options, { exchange: true });
  assert.equal(report.healthy, false);
  assert.equal(report.exit_code, 4);
  assert.equal(report.exchange.ok, false);
  assert.equal(report.exchange.status, 401);
  assert.match(report.exchange.request_id, /^req_/);
  assert.equal(report.exchange.error.kind, 'denied');
  const f = report.findings.find((x) => x.code === 'exchange_failed');
  assert.equal(f.kind, 'denied');
  assertNoSecrets(JSON.stringify(report), [jwt], 'the doctor report');
});

test('a configuration that does not resolve is a report (exit code 2), not a rejection', async () => {
  const empty = sandbox();
  try {
    const report = await doctor({ env: empty.env });
    checkShape(report);
    assert.equal(report.healthy, false);
    assert.equal(report.exit_code, 2);
    assert.equal(report.config.ok, false);
    assert.equal(report.config.error.kind, 'config');
    assert.deepEqual(codes(report, 'error'), ['config_error']);

    const bad = await doctor({ ...federationOptions(emu, sb), organizationId: 'not-a-uuid' });
    assert.equal(bad.exit_code, 2);
    assert.ok(codes(bad, 'error').length >= 1);
    assert.match(JSON.stringify(bad.findings), /organizationId/);
  } finally {
    empty.cleanup();
  }
});

test('malformed arguments reject with ConfigurationError naming the argument (never a sync throw)', async () => {
  const cases = [
    [[{ bogus: 1 }], /doctor\(options\): unknown option "bogus" \(known: profile, /],
    [[{ baseUrl: 'x' }], /did you mean baseURL/],
    [[42], /options must be an object/],
    [[{ identityToken: { source: 'telepathy' } }], /identityToken/],
    [[{}, { exchange: 'yes' }], /exchange must be true or false/],
    [[{}, { expectedAudience: 5 }], /expectedAudience/],
    [[{}, { baseURL: 'x' }], /doctor\(options, doctorOptions\): unknown option "baseURL"; baseURL is a provider option/],
    [[{}, []], /doctor\(options, doctorOptions\): the options must be an object, got an array/],
  ];
  for (const [args, re] of cases) {
    let p;
    assert.doesNotThrow(() => {
      p = doctor(...args);
    });
    await assert.rejects(p, (e) => {
      assert.ok(e instanceof ConfigurationError, `${e && e.name}: ${e && e.message}`);
      assert.equal(e.kind, 'config');
      assert.match(e.message, re);
      return true;
    });
  }
});

test('the diagnosis runs off the event loop (a slow identity command does not block timers)', async () => {
  const script = "setTimeout(() => process.stdout.write(process.argv[1]), 600)";
  const jwt = await emu.mintJwt();
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  try {
    const report = await doctor(
      federationOptions(emu, sb, { identityToken: { source: 'command', command: [process.execPath, '-e', script, jwt] } }),
    );
    assert.equal(report.identity.fetched, true, JSON.stringify(report.identity));
    assert.equal(report.healthy, true, JSON.stringify(report.findings));
  } finally {
    clearInterval(timer);
  }
  assert.ok(ticks >= 10, `the loop ticked ${ticks} times during a >600 ms diagnosis`);
});
