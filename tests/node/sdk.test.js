// The official @anthropic-ai/sdk as the real client, against the emulator on loopback.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const Anthropic = require('@anthropic-ai/sdk').default;

const { Provider } = require('anthropic-wif');
const { execFileSync } = require('node:child_process');
const { emulatorAndSandbox, federationOptions, jwtCommand, cliBinary, PKG, RULE, ORG, SVAC } = require('./_helpers.js');

let emu;
let sb;
emulatorAndSandbox((fx) => ({ emu, sb } = fx));

function message(client) {
  return client.messages.create({
    model: 'claude-sonnet-4-5',
    max_tokens: 32,
    messages: [{ role: 'user', content: 'Hello' }],
  });
}

test('50 concurrent messages.create calls through 50 clients sharing one provider make one exchange', async () => {
  await emu.reset();
  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: sb.path('c1', 'token.json') }));
  const credentials = provider.credentials();
  assert.equal(typeof credentials, 'function');
  assert.equal(provider.credentials(), credentials, 'credentials() is one stable function');
  // One client each: the SDK's own token cache cannot coalesce across clients,
  // so the 50 concurrent provider calls meet only our single-flight.
  const clients = Array.from({ length: 50 }, () => new Anthropic({ baseURL: emu.baseURL, credentials, maxRetries: 0 }));
  const replies = await Promise.all(clients.map(message));
  for (const r of replies) {
    assert.equal(r.type, 'message');
    assert.equal(r.role, 'assistant');
  }
  const stats = await emu.stats();
  assert.equal(stats.exchanges, 1, `one exchange for 50 calls: ${JSON.stringify(stats)}`);
  assert.equal(stats.messages, 50);

  // The exchange was the SDK's wire format, with our User-Agent.
  const reqs = await emu.requests();
  const list = Array.isArray(reqs) ? reqs : reqs.requests;
  assert.equal(list.length, 1);
  const body = list[0].body;
  assert.equal(body.grant_type, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  assert.equal(body.federation_rule_id, federationOptions(emu, sb).federationRuleId);
  const headers = Object.fromEntries(Object.entries(list[0].headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.match(String(headers['user-agent']), /^anthropic-wif\/\S+ \(node\)/);
});

test('one client, 50 concurrent calls: one exchange (the emulator answers only a minted bearer with the oauth beta)', async () => {
  await emu.reset();
  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: sb.path('c2', 'token.json') }));
  const client = new Anthropic({ baseURL: emu.baseURL, credentials: provider.credentials(), maxRetries: 0 });
  const replies = await Promise.all(Array.from({ length: 50 }, () => message(client)));
  assert.equal(replies.length, 50);
  const stats = await emu.stats();
  assert.equal(stats.exchanges, 1);
  assert.equal(stats.messages, 50);
});

test('getToken({ forceRefresh: true }) makes a new exchange; plain getToken reuses the cached token', async () => {
  await emu.reset();
  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: sb.path('c3', 'token.json') }));
  const a = await provider.getToken();
  assert.match(a.token, /^sk-ant-oat01-/);
  assert.equal(typeof a.expiresAt, 'number');
  assert.ok(Number.isInteger(a.expiresAt));
  const now = Math.floor(Date.now() / 1000);
  assert.ok(a.expiresAt > now && a.expiresAt <= now + 86_400 + 5, `expiresAt is unix seconds: ${a.expiresAt}`);

  const b = await provider.getToken();
  assert.equal(b.token, a.token);
  assert.equal((await emu.stats()).exchanges, 1);
  assert.notEqual(b, a, 'each call gets its own object');
  b.token = 'mutated by the caller';
  assert.equal((await provider.getToken()).token, a.token, "a caller's mutation does not reach the cache");

  const c = await provider.getToken({ forceRefresh: true });
  assert.notEqual(c.token, a.token);
  assert.equal((await emu.stats()).exchanges, 2);

  const d = await provider.credentials()();
  assert.equal(d.token, c.token, 'the credentials function serves the refreshed token');
  assert.equal((await emu.stats()).exchanges, 2);
});

test('after the server revokes the token, the SDK gets a 401, asks with forceRefresh, and succeeds', async () => {
  await emu.reset();
  const provider = new Provider(federationOptions(emu, sb, { credentialsPath: sb.path('c4', 'token.json') }));
  const seen = [];
  const credentials = provider.credentials();
  const spy = (opts) => {
    seen.push(!!(opts && opts.forceRefresh));
    return credentials(opts);
  };
  const client = new Anthropic({ baseURL: emu.baseURL, credentials: spy, maxRetries: 1 });
  await message(client);
  await emu.revoke();
  const reply = await message(client);
  assert.equal(reply.type, 'message');
  assert.deepEqual(seen, [false, true]);
  assert.equal((await emu.stats()).exchanges, 2);
});

test('a second provider on the same cache file uses the disk cache (no new exchange)', async () => {
  await emu.reset();
  const opts = federationOptions(emu, sb, { credentialsPath: sb.path('c5', 'token.json') });
  const first = await new Provider(opts).getToken();
  const second = await new Provider(opts).getToken();
  assert.equal(second.token, first.token);
  assert.equal(second.expiresAt, first.expiresAt);
  assert.equal((await emu.stats()).exchanges, 1);
  const file = JSON.parse(fs.readFileSync(opts.credentialsPath, 'utf8'));
  assert.equal(file.type, 'oauth_token');
  assert.equal(file.expires_at, first.expiresAt);
  if (process.platform !== 'win32') {
    assert.equal(fs.statSync(opts.credentialsPath).mode & 0o777, 0o600);
  }
});

test('the SDK reads the token our provider cached on disk for a profile (shared cache)', async () => {
  await emu.reset();
  const jwtFile = sb.path('identity-token');
  fs.writeFileSync(jwtFile, await emu.mintJwt());
  const profileDir = sb.path('config', 'configs');
  fs.mkdirSync(profileDir, { recursive: true, mode: 0o700 });
  const opts = federationOptions(emu, sb);
  fs.writeFileSync(
    `${profileDir}/shared.json`,
    JSON.stringify({
      version: '1.0',
      organization_id: opts.organizationId,
      base_url: emu.baseURL,
      authentication: {
        type: 'oidc_federation',
        federation_rule_id: opts.federationRuleId,
        service_account_id: opts.serviceAccountId,
        identity_token: { source: 'file', path: jwtFile },
      },
    }),
    { mode: 0o600 },
  );
  const provider = new Provider({ profile: 'shared', env: sb.env });
  const ours = await provider.getToken();
  assert.equal((await emu.stats()).exchanges, 1);
  assert.ok(fs.existsSync(sb.path('config', 'credentials', 'shared.json')), 'profile cache file written');

  // The official SDK, resolving the same profile itself, must reuse it: the JWT in
  // the file is spent, so an exchange of its own would be refused.
  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith('ANTHROPIC_')) delete process.env[k];
    process.env.ANTHROPIC_CONFIG_DIR = sb.env.ANTHROPIC_CONFIG_DIR;
    const client = new Anthropic({ profile: 'shared', maxRetries: 0 });
    const reply = await message(client);
    assert.equal(reply.type, 'message');
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
  assert.equal((await emu.stats()).exchanges, 1, 'the SDK used our cached token');
  assert.match(ours.token, /^sk-ant-oat01-/);
});

test('new Provider() with no options resolves like the CLI with no flags, and shares its cache', async () => {
  await emu.reset();
  const jwtFile = sb.path('env-identity-token');
  fs.writeFileSync(jwtFile, await emu.mintJwt());
  const env = {
    ...sb.env,
    XDG_CACHE_HOME: sb.path('cache-env'),
    ANTHROPIC_BASE_URL: emu.baseURL,
    ANTHROPIC_FEDERATION_RULE_ID: RULE,
    ANTHROPIC_ORGANIZATION_ID: ORG,
    ANTHROPIC_SERVICE_ACCOUNT_ID: SVAC,
    ANTHROPIC_IDENTITY_TOKEN_FILE: jwtFile,
  };
  // The CLI exchanges (the JWT in the file is then spent) ...
  const cli = JSON.parse(execFileSync(cliBinary(), ['token'], { env, encoding: 'utf8' }));
  assert.match(cli.access_token, /^sk-ant-oat01-/);
  // ... and a Node process with the same environment and no options finds its token.
  const script = `require(${JSON.stringify(PKG)}).Provider && new (require(${JSON.stringify(PKG)}).Provider)().getToken()
    .then((t) => process.stdout.write(JSON.stringify(t)), (e) => { process.stderr.write(e.name + ': ' + e.message); process.exit(1); })`;
  const node = JSON.parse(execFileSync(process.execPath, ['-e', script], { env, encoding: 'utf8' }));
  assert.equal(node.token, cli.access_token);
  assert.equal(node.expiresAt, cli.expires_at);
  assert.equal((await emu.stats()).exchanges, 1);
});

test('jwtCommand is a real program (sanity check of the test fixture)', async () => {
  const spec = jwtCommand(emu.baseURL);
  const out = execFileSync(spec.command[0], spec.command.slice(1), { encoding: 'utf8' });
  assert.match(out, /^eyJ[\w-]+\.[\w-]+\.[\w-]*$/);
});
