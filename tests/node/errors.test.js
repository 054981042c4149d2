// Every error kind, as the JS classes, with the CLI's messages and no secrets.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const util = require('node:util');
const Anthropic = require('@anthropic-ai/sdk').default;

const wif = require('anthropic-wif');
const { Provider, WifError, ConfigurationError, IdentitySourceError, ExchangeDeniedError, EndpointUnavailableError } = wif;
const { spawn, spawnSync } = require('node:child_process');
const { startEmulator, sandbox, federationOptions, assertNoSecrets, cliBinary, RULE } = require('./_helpers.js');

let emu;
let strict; // an emulator that knows only one rule
let sb;
before(async () => {
  [emu, strict] = await Promise.all([startEmulator(), startEmulator(['--rule', RULE])]);
  sb = sandbox();
});
after(async () => {
  await Promise.all([emu.stop(), strict.stop()]);
  sb.cleanup();
});

/** Asserts the common shape of every WifError and that nothing secret shows anywhere. */
function checkError(err, Cls, kind, secrets = []) {
  assert.ok(err instanceof Cls, `${err && err.name}: ${err && err.message}`);
  assert.ok(err instanceof WifError);
  assert.ok(err instanceof Error);
  assert.equal(err.kind, kind);
  assert.equal(err.code, `ANTHROPIC_WIF_${kind.toUpperCase()}`);
  assert.equal(err.name, Cls.name);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 10);
  assert.ok(!err.message.startsWith('anthropic-wif-error:'), 'the native marker never shows');
  for (const text of [err.message, String(err.stack), util.inspect(err), JSON.stringify(err)]) {
    assertNoSecrets(text, secrets, 'the error');
  }
}

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

test('config: bad options throw ConfigurationError synchronously, naming the option', () => {
  const cases = [
    [{ baseUrl: 'http://127.0.0.1:1' }, /new Provider\(options\): unknown option "baseUrl"; did you mean baseURL\?/],
    [{ federation_rule_id: 'fdrl_x' }, /did you mean federationRuleId\?/],
    [{ organizationId: 42 }, /organizationId must be a string/],
    [{ identityToken: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' }, /option identityToken must be an identity-token source object/],
    [{ identityToken: { source: 'telepathy' } }, /identityToken/],
    [{ noCache: 'yes' }, /noCache/],
    [{ minRemaining: -1 }, /option minRemaining must be a whole number of seconds from 0 to 86400, got -1/],
    [{ minRemaining: 86401 }, /option minRemaining must be a whole number of seconds from 0 to 86400/],
    [{ minRemaining: NaN }, /option minRemaining must be a whole number of seconds from 0 to 86400, got a string/],
    [{ lockTimeout: 3601 }, /option lockTimeout must be a number of seconds from 0 to 3600/],
    [{ configDir: '' }, /option configDir is empty/],
    [{ env: { A: 1 } }, /env/],
  ];
  for (const [opts, re] of cases) {
    assert.throws(() => new Provider(opts), (e) => {
      checkError(e, ConfigurationError, 'config');
      assert.match(e.message, re);
      return true;
    });
  }
  assert.throws(() => new Provider('fdrl_x'), ConfigurationError);
  assert.throws(() => new Provider([]), ConfigurationError);
});

test('config: malformed ids and an insecure base URL throw from the constructor, naming the option', async () => {
  await emu.reset();
  const cases = [
    [{ federationRuleId: 'rule-without-tag' }, /option federationRuleId.*fdrl_/],
    [{ organizationId: 'not-a-uuid' }, /option organizationId.*UUID/],
    [{ serviceAccountId: 'svc-1' }, /option serviceAccountId/],
    [{ workspaceId: 'ws-1' }, /option workspaceId/],
    [{ baseURL: 'http://api.example.com' }, /option baseURL.*https:\/\//],
  ];
  for (const [bad, re] of cases) {
    assert.throws(() => new Provider(federationOptions(emu, sb, bad)), (e) => {
      checkError(e, ConfigurationError, 'config');
      assert.match(e.message, re);
      return true;
    });
  }
  assert.equal((await emu.stats()).token_requests, 0, 'nothing was sent');
});

test('config: with no options and nothing configured, the constructor says what to set', () => {
  const empty = sandbox();
  after(() => empty.cleanup());
  assert.throws(
    () => new Provider({ env: empty.env }),
    (e) => {
      checkError(e, ConfigurationError, 'config');
      assert.match(e.message, /ANTHROPIC_FEDERATION_RULE_ID|federation/i);
      return true;
    },
  );
});

test('messages are the CLI\'s: the same configuration fails with the same text in both', () => {
  const env = {
    ...sb.env,
    ANTHROPIC_FEDERATION_RULE_ID: RULE,
    ANTHROPIC_ORGANIZATION_ID: 'not-a-uuid',
    ANTHROPIC_IDENTITY_TOKEN_FILE: sb.path('whatever'),
  };
  const cli = spawnSync(cliBinary(), ['token'], { env, encoding: 'utf8' });
  assert.equal(cli.status, 2, 'the CLI exits 2 on a configuration error');
  assert.equal(cli.stdout, '');
  let err;
  try {
    new Provider({ env });
  } catch (e) {
    err = e;
  }
  checkError(err, ConfigurationError, 'config');
  assert.match(err.message, /ANTHROPIC_ORGANIZATION_ID/);
  assert.ok(cli.stderr.includes(err.message), `CLI: ${cli.stderr}\nNode: ${err.message}`);
});

test('identity: a missing identity token file is an IdentitySourceError naming the file', async () => {
  const missing = sb.path('no-such-token');
  const p = new Provider(federationOptions(emu, sb, { identityToken: { source: 'file', path: missing }, noCache: true }));
  const err = await rejection(p.getToken());
  checkError(err, IdentitySourceError, 'identity');
  assert.ok(err.message.includes(missing), err.message);
  assert.equal(err.status, null);
});

test('identity: a failing command is an IdentitySourceError; the JWT it printed on stderr is scrubbed', async () => {
  const jwt = await emu.mintJwt();
  const script = `process.stderr.write('could not mint, last token was ' + ${JSON.stringify(jwt)}); process.exit(3)`;
  const p = new Provider(
    federationOptions(emu, sb, { identityToken: { source: 'command', command: [process.execPath, '-e', script] }, noCache: true }),
  );
  const err = await rejection(p.getToken());
  checkError(err, IdentitySourceError, 'identity', [jwt]);
});

test('denied: an unknown rule is an ExchangeDeniedError with status 401 and the request id', async () => {
  await strict.reset();
  const p = new Provider(federationOptions(strict, sb, { federationRuleId: 'fdrl_01OtherRule00000000000000', noCache: true }));
  const err = await rejection(p.getToken());
  checkError(err, ExchangeDeniedError, 'denied');
  assert.equal(err.status, 401);
  assert.match(String(err.requestId), /^req_/);
  assert.ok(err.message.includes(err.requestId), 'the message carries the request id');
});

test('denied: an error body echoing the assertion is scrubbed from message, stack and inspect output', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'echo', status: 400 }]);
  const p = new Provider(federationOptions(emu, sb, { noCache: true }));
  const err = await rejection(p.getToken());
  const reqs = await emu.requests();
  const list = Array.isArray(reqs) ? reqs : reqs.requests;
  const assertion = list[list.length - 1].body.assertion;
  assert.match(assertion, /^eyJ/);
  checkError(err, ExchangeDeniedError, 'denied', [assertion]);
  assert.equal(err.status, 400);
});

test('denied: through the SDK, messages.create rejects with the same ExchangeDeniedError', async () => {
  await strict.reset();
  const p = new Provider(federationOptions(strict, sb, { federationRuleId: 'fdrl_01OtherRule00000000000000', noCache: true }));
  const client = new Anthropic({ baseURL: strict.baseURL, credentials: p.credentials(), maxRetries: 0 });
  const err = await rejection(client.messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] }));
  // The SDK passes the provider's error through unchanged.
  checkError(err, ExchangeDeniedError, 'denied');
  assert.equal(err.status, 401);
});

test('unavailable: a closed port is an EndpointUnavailableError (after the retries)', async () => {
  const port = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
  const p = new Provider(federationOptions(emu, sb, { baseURL: `http://127.0.0.1:${port}`, noCache: true }));
  const err = await rejection(p.getToken());
  checkError(err, EndpointUnavailableError, 'unavailable');
  assert.equal(err.status, null);
});

test('unavailable: repeated 503s are an EndpointUnavailableError carrying status and request id', async () => {
  await emu.reset();
  await emu.faults([{ kind: 'status', status: 503, count: 10 }]);
  const p = new Provider(federationOptions(emu, sb, { noCache: true }));
  const err = await rejection(p.getToken());
  checkError(err, EndpointUnavailableError, 'unavailable');
  assert.equal(err.status, 503);
  assert.match(String(err.requestId), /^req_/);
  await emu.reset();
});

test('internal: waiting too long for another process\'s cache lock is a WifError of kind internal', async (t) => {
  const flock = ['/usr/bin/flock', '/bin/flock'].find((f) => fs.existsSync(f));
  if (!flock) return t.skip('needs util-linux flock(1) to hold the lock from another process');
  await emu.reset();
  const dir = sb.path('locked');
  fs.mkdirSync(dir, { mode: 0o700 });
  const cache = `${dir}/token.json`;
  // Another process holds `<cache>.lock` (as one that is exchanging would).
  // Its own process group, so flock and the sleep it runs are killed together afterwards.
  const holder = spawn(flock, ['-x', `${cache}.lock`, '-c', 'echo locked; exec sleep 60'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  try {
    await new Promise((resolve, reject) => {
      holder.stdout.once('data', resolve);
      holder.once('exit', (code) => reject(new Error(`flock exited ${code}`)));
    });
    const p = new Provider(federationOptions(emu, sb, { credentialsPath: cache, lockTimeout: 0.5 }));
    const started = Date.now();
    const err = await rejection(p.getToken());
    checkError(err, WifError, 'internal');
    assert.equal(Object.getPrototypeOf(err), WifError.prototype, 'internal errors are plain WifErrors');
    assert.equal(err.errorCode, 'lock_timeout');
    assert.match(err.message, /timed out .* waiting for the token cache lock/);
    assert.ok(err.message.includes(`${cache}.lock`), err.message);
    assert.ok(Date.now() - started < 10_000);
    assert.equal((await emu.stats()).token_requests, 0, 'no exchange while another process holds the lock');
  } finally {
    try {
      process.kill(-holder.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    holder.stdout.destroy();
  }
});

test('an unusable cache location does not cost the token (it is returned, just not cached)', async () => {
  await emu.reset();
  // The cache file's parent is a regular file: the cache cannot be created.
  const blocker = sb.path('not-a-dir');
  fs.writeFileSync(blocker, 'x');
  const p = new Provider(federationOptions(emu, sb, { credentialsPath: `${blocker}/token.json` }));
  const t = await p.getToken();
  assert.match(t.token, /^sk-ant-oat01-/);
  assert.equal(fs.readFileSync(blocker, 'utf8'), 'x');
  assert.equal((await emu.stats()).exchanges, 1);
});

test('no token or JWT in util.inspect or JSON of a provider and its credentials function', async () => {
  await emu.reset();
  const p = new Provider(federationOptions(emu, sb, { credentialsPath: sb.path('inspect', 'token.json') }));
  const { token } = await p.getToken();
  for (const text of [util.inspect(p, { showHidden: true, depth: 5 }), util.inspect(p.credentials(), { showHidden: true }), JSON.stringify(p)]) {
    assertNoSecrets(text, [token], 'util.inspect output');
  }
  // Like Python's repr: the configuration given, in the option names of this face.
  const shown = util.inspect(p);
  assert.match(shown, /^Provider \{ federationRuleId: 'fdrl_[^']+', organizationId: '[^']+', /);
  assert.match(shown, /identityToken: <command>, env: <\d+ variables> \}$/);
  assert.match(util.inspect(p.forBaseURL('https://other.example')), /forBaseURL: 'https:\/\/other\.example' \}$/);
  const fixed = new Provider({ env: { ANTHROPIC_CONFIG_DIR: sb.path('cfg'), ANTHROPIC_AUTH_TOKEN: token } });
  assert.equal(util.inspect(fixed), 'Provider { env: <2 variables> }');
});

test('an explicit empty optional id is left out, never taken from the environment', async () => {
  await emu.reset();
  const env = { ...process.env, ANTHROPIC_SERVICE_ACCOUNT_ID: 'svac_01FromTheEnvironment0000', ANTHROPIC_WORKSPACE_ID: 'wrkspc_01FromTheEnvironment00' };
  const p = new Provider(federationOptions(emu, sb, { serviceAccountId: '', workspaceId: '', noCache: true, env }));
  await p.getToken();
  const [req] = await emu.requests();
  assert.equal(req.body.service_account_id, undefined);
  assert.equal(req.body.workspace_id, undefined);
});

test('every kind the engine reports maps to a class', () => {
  assert.deepEqual([...wif.ERROR_KINDS], ['config', 'identity', 'denied', 'unavailable', 'internal']);
  assert.equal(ConfigurationError.kind, 'config');
  assert.equal(IdentitySourceError.kind, 'identity');
  assert.equal(ExchangeDeniedError.kind, 'denied');
  assert.equal(EndpointUnavailableError.kind, 'unavailable');
  const e = new ExchangeDeniedError('x', { status: 401, requestId: 'req_1' });
  assert.equal(e.kind, 'denied');
  assert.equal(e.status, 401);
  assert.equal(e.requestId, 'req_1');
});
