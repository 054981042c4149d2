// The real Claude Code (the npm release pinned in tests/e2e/claude-code/) run as `claude -p` against the
// emulator through each way of giving it federated tokens, with the headers it sends recorded by the
// emulator (issue 13, item 6). The API refuses an OAuth access token without the `oauth-2025-04-20` beta
// flag, and so does the emulator, with the same 401.
//
// Works (docs/daemon.md, "Claude Code: the ways that work"): a `user_oauth` profile without `client_id`
// whose credentials file `anthropic-wif daemon` keeps (Claude Code then adds the flag itself), written by
// hand or by `anthropic-wif setup claude-code` (the README's recipe); `anthropic-wif exec`, which gives
// Claude Code such a profile of its own; the proxy (Claude Code holds a placeholder); Claude Code's own
// federation from the SDK environment variables; and `exec --env-token` with ANTHROPIC_BETAS.
// Fails: `exec --env-token` as it is (ANTHROPIC_AUTH_TOKEN: bare Bearer) and the `apiKeyHelper` recipe
// (x-api-key and Bearer): no flag, 401, and Claude Code retries (up to 11 attempts, backing off, for
// minutes, printing nothing in -p mode); the tests stop it after the second 401.
//
// Run: node tests/e2e/claude_code.mjs install (once), cargo build -p anthropic-wif-cli, then
// node --test tests/e2e/claude_code.test.mjs. Each run's headers are printed as test diagnostics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { BIN } from './proxy_stack.mjs';
import { claudeStack, CLAUDE_CODE_VERSION, REPLY } from './claude_code.mjs';

const OAUTH_BETA = 'oauth-2025-04-20';

let s;
before(async () => {
  s = await claudeStack();
});
after(async () => {
  if (s) await s.close();
});

const betas = (req) => (req.headers['anthropic-beta'] ?? '').split(',').map((f) => f.trim());

/** One line per request: what authenticated it, and whether the flag was there. */
function describe(req) {
  const auth = req.headers.authorization ?? '';
  const token = (v) => (v.startsWith('sk-ant-oat01-') ? 'sk-ant-oat01-…' : v);
  return [
    `${req.method} ${req.path} → ${req.status}`,
    `authorization: ${auth ? auth.replace(/^(Bearer) (.*)$/, (_, b, t) => `${b} ${token(t)}`) : '(none)'}`,
    `x-api-key: ${req.headers['x-api-key'] ? token(req.headers['x-api-key']) : '(none)'}`,
    `anthropic-beta: ${req.headers['anthropic-beta'] ?? '(none)'}`,
    `user-agent: ${req.headers['user-agent']}`,
  ].join(' | ');
}

function report(t, r) {
  t.diagnostic(`claude exit ${r.code ?? r.signal} after ${r.ms} ms${r.stopped ? ' (stopped by the test)' : ''}${r.timedOut ? ' (timed out)' : ''}`);
  for (const req of r.requests) t.diagnostic(describe(req));
}

/** Claude Code's own request shape, whatever the path: streamed Messages API with its user agent. */
function assertClaudeRequest(req) {
  assert.equal(req.method, 'POST');
  assert.equal(req.path, '/v1/messages?beta=true');
  assert.equal(req.headers['user-agent'], `claude-cli/${CLAUDE_CODE_VERSION} (external, sdk-cli)`);
  assert.ok(betas(req).includes('claude-code-20250219'), req.headers['anthropic-beta']);
}

function assertAnswered(r) {
  assert.equal(r.code, 0, `claude failed:\n${r.stderr}`);
  assert.equal(r.stdout.trim(), REPLY);
  assert.ok(r.requests.length >= 1, 'the emulator saw the request');
  for (const req of r.requests) {
    assertClaudeRequest(req);
    assert.equal(req.status, 200);
  }
}

/** Every request carried a bearer (`token`, or any access token), no x-api-key, and the beta flag. */
function assertBearerWithFlag(r, token) {
  for (const req of r.requests) {
    if (token) assert.equal(req.headers.authorization, `Bearer ${token}`);
    else assert.match(req.headers.authorization, /^Bearer sk-ant-oat01-/);
    assert.equal(req.headers['x-api-key'], undefined);
    assert.ok(betas(req).includes(OAUTH_BETA), req.headers['anthropic-beta']);
  }
}

/** A bounded run that is expected to be refused: stop once the emulator has said 401 twice. */
const refusedTwice = (reqs) => reqs.filter((r) => r.status === 401).length >= 2;

function assertRefused(r) {
  assert.ok(r.stopped, `Claude Code was expected to keep retrying the 401s; it exited ${r.code}:\n${r.stderr}`);
  assert.ok(!r.stdout.includes(REPLY), 'no answer');
  assert.ok(r.requests.length >= 2);
  for (const req of r.requests) {
    assertClaudeRequest(req);
    assert.equal(req.status, 401);
    assert.ok(!betas(req).includes(OAUTH_BETA), `no ${OAUTH_BETA} flag: ${req.headers['anthropic-beta']}`);
  }
}

test('proxy: ANTHROPIC_BASE_URL to `anthropic-wif proxy` and a placeholder token: Claude Code answers', async (t) => {
  await s.rotateJwt();
  const proxyUrl = await s.startProxy();
  const r = await s.run({ env: { ANTHROPIC_BASE_URL: proxyUrl, ANTHROPIC_AUTH_TOKEN: 'placeholder' } });
  report(t, r);
  assertAnswered(r);
  // What reached the API: the proxy's token and flag in place of the placeholder, Claude Code's own
  // betas kept.
  assertBearerWithFlag(r);
});

test('user_oauth profile without client_id, credentials from `anthropic-wif token`: Claude Code sends the flag and answers', async (t) => {
  await s.rotateJwt();
  const out = s.wif(['token', ...s.federationArgs()]);
  assert.equal(out.code, 0, out.stderr);
  const { access_token: accessToken, expires_at: expiresAt } = JSON.parse(out.stdout);
  // The profile as the README shows it (no base_url: the API's). ANTHROPIC_BASE_URL stands the emulator
  // in for the API; a profile's base_url works as well, but Claude Code then also asks the real
  // api.anthropic.com for its policy limits and waits up to 5 s for an answer that cannot come here.
  const configDir = s.userOauthProfile('claude', { accessToken, expiresAt });
  const r = await s.run({ env: { ANTHROPIC_PROFILE: 'claude', ANTHROPIC_CONFIG_DIR: configDir, ANTHROPIC_BASE_URL: s.emuUrl } });
  report(t, r);
  assertAnswered(r);
  assertBearerWithFlag(r, accessToken);
  // Claude Code only read the profile: the file still holds what we wrote.
  assert.equal(JSON.parse(readFileSync(join(configDir, 'credentials', 'claude.json'), 'utf8')).access_token, accessToken);
});

/**
 * `anthropic-wif daemon ARGS` in the stack's HOME, running until `stop()`; resolves once its ready file says
 * the first token is in place (`anthropic-wif probe --ready-file`, as the Kubernetes recipe's probe).
 */
async function startDaemon(args, env = {}) {
  const ready = join(s.dir, `daemon-ready-${Date.now()}`);
  const child = spawn(BIN, ['daemon', '--ready-file', ready, ...args], { env: { ...s.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const exited = new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
  const deadline = Date.now() + 30_000;
  while (s.wif(['probe', '--ready-file', ready]).code !== 0) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the daemon did not become ready: ${log}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
  return {
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      const r = await exited;
      assert.equal(r.code, 0, `the daemon's exit on SIGTERM: ${log}`);
      assert.ok(!log.includes('sk-ant-oat01-') && !log.includes('eyJ'), log);
      return log;
    },
  };
}

const credentials = (configDir, name) => JSON.parse(readFileSync(join(configDir, 'credentials', `${name}.json`), 'utf8'));

test('daemon + profile: `anthropic-wif daemon --write-profile` keeps the profile Claude Code reads; it sends the flag and answers', async (t) => {
  await s.rotateJwt();
  const configDir = join(s.dir, 'daemon-config');
  const d = await startDaemon([...s.federationArgs(), '--target-profile', 'claude', '--write-profile'], { ANTHROPIC_CONFIG_DIR: configDir });
  try {
    // The profile as the daemon wrote it: externally rotated, with the configuration's base URL.
    const profile = JSON.parse(readFileSync(join(configDir, 'configs', 'claude.json'), 'utf8'));
    assert.deepEqual(profile.authentication, { type: 'user_oauth' });
    assert.equal(profile.base_url, s.emuUrl);
    // ANTHROPIC_BASE_URL as well: with only the profile's base_url, Claude Code also asks the public API for
    // its policy limits and waits for an answer that cannot come here (docs/sdk-profiles.md §2).
    const r = await s.run({ env: { ANTHROPIC_PROFILE: 'claude', ANTHROPIC_CONFIG_DIR: configDir, ANTHROPIC_BASE_URL: s.emuUrl } });
    report(t, r);
    assertAnswered(r);
    assertBearerWithFlag(r, credentials(configDir, 'claude').access_token);
  } finally {
    await d.stop();
  }
});

test('setup claude-code (the README recipe): the profile and the settings it writes, the daemon it prints; Claude Code answers', async (t) => {
  // The README's commands (tests/e2e/test_readme.py checks they are there), with the emulator's federation
  // flags for "your federation settings".
  await s.rotateJwt();
  const configDir = join(s.dir, 'setup-config');
  const settingsFile = join(s.dir, 'setup-claude', 'settings.json');
  const env = { ANTHROPIC_CONFIG_DIR: configDir, CLAUDE_CONFIG_DIR: join(s.dir, 'setup-claude') };
  const setup = s.wif(['setup', 'claude-code', ...s.federationArgs()], env);
  assert.equal(setup.code, 0, setup.stderr);
  t.diagnostic(setup.stdout.trim().split('\n').join(' | '));
  assert.equal(statSync(settingsFile).mode & 0o777, 0o600);
  const settings = JSON.parse(readFileSync(settingsFile, 'utf8'));
  assert.equal(settings.env.ANTHROPIC_PROFILE, 'claude-code');
  assert.equal(settings.env.ANTHROPIC_CONFIG_DIR, configDir);
  assert.equal(settings.env.ANTHROPIC_BASE_URL, s.emuUrl);
  // The daemon command it printed, as printed (arguments after `anthropic-wif daemon`).
  const printed = setup.stdout.split('\n').map((l) => l.trim()).find((l) => l.startsWith('anthropic-wif daemon '));
  const args = printed.slice('anthropic-wif daemon '.length).split(' ');
  const d = await startDaemon(args, env);
  try {
    // Claude Code with those settings (its user settings.json) and nothing else set.
    const r = await s.run({ settings });
    report(t, r);
    assertAnswered(r);
    assertBearerWithFlag(r, credentials(configDir, 'claude-code').access_token);
  } finally {
    await d.stop();
  }
});

test('`anthropic-wif exec -- claude`: a private user_oauth profile; Claude Code sends the flag and answers', async (t) => {
  await s.rotateJwt();
  const tmp = join(s.dir, 'exec-tmp');
  mkdirSync(tmp, { mode: 0o700 });
  const r = await s.run({ wrap: [BIN, 'exec', ...s.federationArgs(), '--'], env: { TMPDIR: tmp } });
  report(t, r);
  assertAnswered(r);
  assertBearerWithFlag(r);
  // exec made its private directory there (Claude Code puts its own things there too) and removed it when
  // Claude Code exited.
  assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('anthropic-wif-exec-')), []);
});

test('`anthropic-wif exec --env-token -- claude`: a bare Bearer without the flag, refused with 401 (retried until stopped)', async (t) => {
  await s.rotateJwt();
  const r = await s.run({ wrap: [BIN, 'exec', '--env-token', ...s.federationArgs(), '--'], stopWhen: refusedTwice, timeoutMs: 60_000 });
  report(t, r);
  assertRefused(r);
  for (const req of r.requests) {
    assert.match(req.headers.authorization, /^Bearer sk-ant-oat01-/);
    assert.equal(req.headers['x-api-key'], undefined);
  }
});

test('the former README apiKeyHelper recipe: x-api-key and Bearer, no flag, refused with 401 (retried until stopped)', async (t) => {
  await s.rotateJwt();
  const helper = [BIN, 'token', '--format', 'token', ...s.federationArgs()].map((a) => `'${a}'`).join(' ');
  const r = await s.run({
    env: { ANTHROPIC_BASE_URL: s.emuUrl },
    settings: { apiKeyHelper: helper },
    stopWhen: refusedTwice,
    timeoutMs: 60_000,
  });
  report(t, r);
  assertRefused(r);
  for (const req of r.requests) {
    assert.match(req.headers['x-api-key'], /^sk-ant-oat01-/);
    assert.equal(req.headers.authorization, `Bearer ${req.headers['x-api-key']}`);
  }
});

test('`exec --env-token` with ANTHROPIC_BETAS=oauth-2025-04-20: Claude Code adds the flag and answers (for one token lifetime)', async (t) => {
  await s.rotateJwt();
  const r = await s.run({ wrap: [BIN, 'exec', '--env-token', ...s.federationArgs(), '--'], env: { ANTHROPIC_BETAS: OAUTH_BETA } });
  report(t, r);
  assertAnswered(r);
  assertBearerWithFlag(r);
});

test("Claude Code's own federation (the SDK environment variables): it exchanges the identity token itself and caches the result", async (t) => {
  await s.rotateJwt();
  const exchangesBefore = (await s.control('/_emulator/stats')).exchanges;
  const tokenRequestsBefore = (await s.control('/_emulator/requests')).length;
  const r = await s.run({
    env: {
      ANTHROPIC_BASE_URL: s.emuUrl,
      ANTHROPIC_FEDERATION_RULE_ID: 'fdrl_01TestRule000000000000000',
      ANTHROPIC_ORGANIZATION_ID: '00000000-0000-4000-8000-000000000001',
      ANTHROPIC_IDENTITY_TOKEN_FILE: s.jwtFile,
    },
  });
  report(t, r);
  assertAnswered(r);
  assertBearerWithFlag(r);
  assert.equal((await s.control('/_emulator/stats')).exchanges, exchangesBefore + 1);
  const [exchange] = (await s.control('/_emulator/requests')).slice(tokenRequestsBefore);
  t.diagnostic(`token request: user-agent: ${exchange.headers['user-agent']} | anthropic-beta: ${exchange.headers['anthropic-beta']}`);
  assert.equal(exchange.headers['user-agent'], `claude-cli/${CLAUDE_CODE_VERSION} (external, sdk-cli)`);
  // Its cache: <config dir>/credentials/federation/<hash>.json, 0600 in 0700 directories, SDK format.
  const cacheDir = join(r.home, '.config', 'anthropic', 'credentials', 'federation');
  assert.ok(existsSync(cacheDir), 'Claude Code cached the federation token');
  const [file] = readdirSync(cacheDir);
  assert.match(file, /^[0-9a-f]{64}\.json$/);
  assert.equal(statSync(join(cacheDir, file)).mode & 0o777, 0o600);
  assert.equal(statSync(cacheDir).mode & 0o777, 0o700);
  const cached = JSON.parse(readFileSync(join(cacheDir, file), 'utf8'));
  assert.deepEqual(Object.keys(cached).sort(), ['access_token', 'expires_at', 'type', 'version']);
  assert.equal(cached.type, 'oauth_token');
  assert.equal(r.requests[0].headers.authorization, `Bearer ${cached.access_token}`);
});
