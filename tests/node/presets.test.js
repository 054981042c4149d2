// Identity-token presets from Node: every variant of the union constructs, and
// the HTTP presets work end to end against loopback fakes of the platform
// endpoints (a real Node http server), exchanging at the emulator.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const Anthropic = require('@anthropic-ai/sdk').default;

const { Provider, doctor, ConfigurationError, IdentitySourceError } = require('anthropic-wif');
const { emulatorAndSandbox, federationOptions, assertNoSecrets } = require('./_helpers.js');

let emu;
let sb;
emulatorAndSandbox((fx) => ({ emu, sb } = fx));

/** Every variant of IdentityTokenSource, with all its fields (docs/platforms.md). */
const EVERY_SOURCE = [
  { source: 'file', path: '/var/run/secrets/anthropic.com/token' },
  { source: 'env', var: 'MY_JWT' },
  { source: 'command', command: ['gcloud', 'auth', 'print-identity-token'], timeout_s: 10 },
  { source: 'url', url: 'https://idp.example/token?sub=${USER}', headers: { Authorization: 'Bearer ${IDP_TOKEN}' }, field: 'token' },
  { source: 'github_actions' },
  { source: 'github_actions', audience: 'https://api.anthropic.com' },
  { source: 'gitlab' },
  { source: 'gitlab', var: 'X' },
  { source: 'circleci' },
  { source: 'circleci', var: 'CIRCLE_OIDC_TOKEN_V2' },
  { source: 'bitbucket' },
  { source: 'bitbucket', var: 'BITBUCKET_STEP_OIDC_TOKEN' },
  { source: 'terraform' },
  { source: 'terraform', var: 'TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC' },
  { source: 'gcp_metadata' },
  { source: 'gcp_metadata', audience: 'https://api.anthropic.com' },
  { source: 'azure_imds' },
  { source: 'azure_imds', audience: 'api://anthropic', client_id: '11111111-2222-3333-4444-555555555555' },
  { source: 'kubernetes' },
  { source: 'kubernetes', path: '/var/run/secrets/anthropic.com/token' },
  { source: 'aws_sts' },
  { source: 'aws_sts', region: 'us-east-1', audience: 'https://api.anthropic.com', duration_seconds: 300, signing_algorithm: 'ES384' },
  { source: 'spiffe' },
  { source: 'spiffe', socket: 'unix:///run/spire/sockets/agent.sock', spiffe_id: 'spiffe://example.org/app', audience: 'https://api.anthropic.com' },
  { source: 'spiffe', path: '/run/spiffe/jwt_svid.token' },
  { source: 'auto' },
  { source: 'auto', audience: 'https://api.anthropic.com' },
];

test('every identity-token source of the union constructs a Provider (nothing is fetched yet)', async () => {
  await emu.reset();
  const tags = new Set();
  for (const spec of EVERY_SOURCE) {
    const p = new Provider(federationOptions(emu, sb, { identityToken: spec, noCache: true }));
    assert.ok(p instanceof Provider, JSON.stringify(spec));
    tags.add(spec.source);
  }
  assert.deepEqual(
    [...tags].sort(),
    ['auto', 'aws_sts', 'azure_imds', 'bitbucket', 'circleci', 'command', 'env', 'file', 'gcp_metadata', 'github_actions', 'gitlab', 'kubernetes', 'spiffe', 'terraform', 'url'],
  );
  assert.equal((await emu.stats()).token_requests, 0);
});

test('malformed preset settings are a ConfigurationError naming identityToken', () => {
  const cases = [
    [{ source: 'gitlab-ci' }, /identityToken.*gitlab/],
    [{ source: 'kubernetes', path: 5 }, /identityToken/],
    [{ source: 'aws_sts', duration_seconds: 'long' }, /identityToken/],
    [{ source: 'azure_imds', client_id: ['a'] }, /identityToken/],
    [{ audience: 'https://api.anthropic.com' }, /identityToken/],
  ];
  for (const [spec, re] of cases) {
    assert.throws(
      () => new Provider(federationOptions(emu, sb, { identityToken: spec })),
      (e) => e instanceof ConfigurationError && re.test(e.message),
      JSON.stringify(spec),
    );
  }
});

/** A loopback stand-in for a platform's token endpoint; `answer(req, url)` → [status, body]. */
async function fakeEndpoint(answer) {
  const seen = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    seen.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers });
    try {
      const [status, body] = await answer(req, url);
      res.writeHead(status, { 'content-type': typeof body === 'string' ? 'application/jwt' : 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    } catch (e) {
      res.writeHead(500);
      res.end(String(e));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return { port, base: `http://127.0.0.1:${port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

test('github_actions end to end: the runner endpoint (a loopback fake) gives the JWT, the exchange succeeds', async () => {
  await emu.reset();
  const served = [];
  const runner = await fakeEndpoint(async (req) => {
    if (req.headers.authorization !== 'Bearer runner-request-token') return [401, { message: 'bad runner token' }];
    const jwt = await emu.mintJwt({ sub: 'repo:octo/app:ref:refs/heads/main' });
    served.push(jwt);
    return [200, { count: 1, value: jwt }];
  });
  try {
    const env = {
      ...sb.env,
      ACTIONS_ID_TOKEN_REQUEST_URL: `${runner.base}/_apis/distributedtask/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'runner-request-token',
    };
    const provider = new Provider(
      federationOptions(emu, sb, { identityToken: { source: 'github_actions' }, env, credentialsPath: sb.path('gha', 'token.json') }),
    );
    const t = await provider.getToken();
    assert.match(t.token, /^sk-ant-oat01-/);
    // The runner was asked as GitHub documents: GET, the request token as bearer, our audience added.
    assert.equal(runner.seen.length, 1);
    const r = runner.seen[0];
    assert.equal(r.method, 'GET');
    assert.equal(r.path, '/_apis/distributedtask/token');
    assert.deepEqual(r.query, { 'api-version': '2.0', audience: 'https://api.anthropic.com' });
    assert.equal(r.headers.authorization, 'Bearer runner-request-token');
    // The JWT the runner served is the one exchanged.
    const reqs = await emu.requests();
    const list = Array.isArray(reqs) ? reqs : reqs.requests;
    assert.equal(list.length, 1);
    assert.equal(list[0].body.assertion, served[0]);

    // And the official SDK gets its calls through with it.
    const client = new Anthropic({ baseURL: emu.baseURL, credentials: provider.credentials(), maxRetries: 0 });
    const reply = await client.messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(reply.type, 'message');
    assert.equal((await emu.stats()).exchanges, 1);

    // A forced refresh asks the runner again (a fresh JWT: identity tokens are single-use), with a custom audience.
    const custom = new Provider(
      federationOptions(emu, sb, { identityToken: { source: 'github_actions', audience: 'https://aud.example' }, env, noCache: true }),
    );
    await custom.getToken({ forceRefresh: true });
    assert.equal(runner.seen.length, 2);
    assert.equal(runner.seen[1].query.audience, 'https://aud.example');
    assert.equal((await emu.stats()).exchanges, 2);
  } finally {
    await runner.close();
  }
});

test('github_actions: a refused runner request is an IdentitySourceError without the request token or a JWT', async () => {
  const runner = await fakeEndpoint(async () => [403, { message: 'no id-token permission' }]);
  try {
    const env = { ...sb.env, ACTIONS_ID_TOKEN_REQUEST_URL: `${runner.base}/token`, ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'secret-runner-token' };
    const p = new Provider(federationOptions(emu, sb, { identityToken: { source: 'github_actions' }, env, noCache: true }));
    await assert.rejects(p.getToken(), (e) => {
      assert.ok(e instanceof IdentitySourceError, `${e.name}: ${e.message}`);
      assert.match(e.message, /403/);
      for (const text of [e.message, String(e.stack)]) assertNoSecrets(text, ['secret-runner-token'], 'the error');
      return true;
    });
    // Without the runner variables: the error says what the workflow needs.
    const none = new Provider(federationOptions(emu, sb, { identityToken: { source: 'github_actions' }, noCache: true }));
    await assert.rejects(none.getToken(), (e) => e instanceof IdentitySourceError && /id-token: write/.test(e.message));
  } finally {
    await runner.close();
  }
});

test('gcp_metadata and azure_imds end to end against loopback metadata fakes', async () => {
  await emu.reset();
  const gcp = await fakeEndpoint(async (req, url) => {
    if (req.headers['metadata-flavor'] !== 'Google') return [403, 'missing Metadata-Flavor'];
    if (url.pathname !== '/computeMetadata/v1/instance/service-accounts/default/identity') return [404, 'not found'];
    return [200, await emu.mintJwt({ iss: 'https://accounts.google.com', aud: url.searchParams.get('audience') })];
  });
  const azure = await fakeEndpoint(async (req, url) => {
    if (req.headers.metadata !== 'true') return [400, { error: 'missing Metadata header' }];
    const jwt = await emu.mintJwt({ iss: 'https://sts.windows.net/tenant/', aud: url.searchParams.get('resource') });
    return [200, { access_token: jwt, token_type: 'Bearer', resource: url.searchParams.get('resource') }];
  });
  try {
    const env = { ...sb.env, GCE_METADATA_HOST: `127.0.0.1:${gcp.port}`, AZURE_IMDS_ENDPOINT: azure.base };
    const g = await new Provider(federationOptions(emu, sb, { identityToken: { source: 'gcp_metadata' }, env, noCache: true })).getToken();
    assert.match(g.token, /^sk-ant-oat01-/);
    assert.deepEqual(gcp.seen[0].query, { audience: 'https://api.anthropic.com', format: 'full' });

    const a = await new Provider(
      federationOptions(emu, sb, { identityToken: { source: 'azure_imds', client_id: 'cid-1' }, env, noCache: true }),
    ).getToken();
    assert.match(a.token, /^sk-ant-oat01-/);
    assert.equal(azure.seen[0].path, '/metadata/identity/oauth2/token');
    assert.deepEqual(azure.seen[0].query, { 'api-version': '2018-02-01', resource: 'https://api.anthropic.com', client_id: 'cid-1' });
    assert.equal((await emu.stats()).exchanges, 2);

    // doctor() fetches through the preset and decodes what it got, without exchanging.
    const report = await doctor(federationOptions(emu, sb, { identityToken: { source: 'gcp_metadata' }, env, noCache: true }));
    assert.equal(report.identity.source, 'gcp_metadata');
    assert.equal(report.identity.fetched, true);
    assert.equal(report.identity.token.iss, 'https://accounts.google.com');
    assert.equal(report.healthy, true, JSON.stringify(report.findings));
    assert.equal((await emu.stats()).exchanges, 2);
  } finally {
    await Promise.all([gcp.close(), azure.close()]);
  }
});

test('CI-variable presets, kubernetes and auto read their variable / file from the env option', async () => {
  await emu.reset();
  const fresh = () => emu.mintJwt();
  const k8sFile = sb.path('k8s-token');
  fs.writeFileSync(k8sFile, await fresh(), { mode: 0o600 });
  const cases = [
    [{ source: 'gitlab', var: 'X' }, { X: await fresh() }],
    [{ source: 'gitlab' }, { ANTHROPIC_ID_TOKEN: await fresh() }],
    [{ source: 'circleci' }, { CIRCLE_OIDC_TOKEN_V2: await fresh() }],
    [{ source: 'bitbucket' }, { BITBUCKET_STEP_OIDC_TOKEN: await fresh() }],
    [{ source: 'terraform', var: 'TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC' }, { TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC: await fresh() }],
    [{ source: 'kubernetes' }, { ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH: k8sFile }],
    [{ source: 'auto' }, { CIRCLE_OIDC_TOKEN_V2: await fresh() }],
  ];
  for (const [spec, vars] of cases) {
    const p = new Provider(federationOptions(emu, sb, { identityToken: spec, env: { ...sb.env, ...vars }, noCache: true }));
    const t = await p.getToken();
    assert.match(t.token, /^sk-ant-oat01-/, JSON.stringify(spec));
  }
  assert.equal((await emu.stats()).exchanges, cases.length);

  // A missing variable names it and the platform's fix.
  const p = new Provider(federationOptions(emu, sb, { identityToken: { source: 'gitlab', var: 'X' }, noCache: true }));
  await assert.rejects(p.getToken(), (e) => e instanceof IdentitySourceError && /\bX\b/.test(e.message) && /id_tokens/.test(e.message));
});
