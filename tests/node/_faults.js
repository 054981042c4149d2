// The fault matrix (tests/fault-matrix.json) for the Node face: one case =
// its own emulator, its own sandbox (cache, config, identity-token file), one
// `provider.getToken()` (or one official-SDK call), then every check the
// matrix gives. Shared by faults.test.js (in-process) and the debug-logging
// run it starts in a child process. Not a test file itself.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const util = require('node:util');

const wif = require('anthropic-wif');
const { startEmulator, sandbox, federationEnv, ROOT } = require('./_helpers.js');

const MATRIX = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fault-matrix.json'), 'utf8'));

/** The class each error kind arrives as. */
const CLASS_OF = {
  config: wif.ConfigurationError,
  identity: wif.IdentitySourceError,
  denied: wif.ExchangeDeniedError,
  unavailable: wif.EndpointUnavailableError,
  internal: wif.WifError,
};

/** Strings that must never reach an error or a log line. */
const CANARIES = ['sk-ant-', 'SMUGGLEDSECRET', 'ECHOEDTOKEN'];

function closedPortURL() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(`http://127.0.0.1:${port}`));
    });
  });
}

/** Headers promising a 100 000-byte body, then one byte every 400 ms (a slow-loris body). */
async function slowLorisServer() {
  const sockets = new Set();
  const timers = new Set();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
    let seen = '';
    sock.on('data', (d) => {
      if (seen.includes('\r\n\r\n')) return;
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      sock.write(
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\nrequest-id: req_slowloris\r\n\r\n{"access_token":"',
      );
      let n = 0;
      const t = setInterval(() => {
        if (++n > 300 || sock.destroyed) {
          clearInterval(t);
          timers.delete(t);
          return;
        }
        sock.write('a');
      }, 400);
      timers.add(t);
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${srv.address().port}`,
    close: () =>
      new Promise((r) => {
        for (const t of timers) clearInterval(t);
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

function filesUnder(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/** Every place an error's text can surface in Node. */
function errorTexts(err) {
  return {
    'err.message': String(err && err.message),
    'err.stack': String(err && err.stack),
    'util.inspect(err)': util.inspect(err, { showHidden: true, depth: 5 }),
    'JSON.stringify(err)': JSON.stringify(err) || '',
    'String(err)': String(err),
  };
}

function leaks(text, secrets) {
  const found = [];
  for (const s of secrets) if (s && text.includes(s)) found.push(s.length > 24 ? `${s.slice(0, 12)}…` : s);
  for (const c of CANARIES) if (text.includes(c)) found.push(c);
  if (/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/.test(text)) found.push('a JWT');
  return found;
}

/**
 * Runs one case. `via`: 'provider' (provider.getToken()) or 'sdk' (one
 * messages.create through the official SDK with the provider as credentials).
 * Returns { name, secs, problems, jwt, token }.
 */
async function runCase(c, { via = 'provider' } = {}) {
  const problems = [];
  const sb = sandbox();
  const emu = await startEmulator();
  let loris = null;
  let jwt = '';
  let token = null;
  let secs = 0;
  try {
    jwt = await emu.mintJwt();
    const jwtFile = sb.path('identity-token');
    fs.writeFileSync(jwtFile, jwt, { mode: 0o600 });
    // The configuration comes from the environment, as with the CLI.
    const env = federationEnv(emu.baseURL, sb.env, { ANTHROPIC_IDENTITY_TOKEN_FILE: jwtFile });
    if (c.setup === 'connection_refused') env.ANTHROPIC_BASE_URL = await closedPortURL();
    else if (c.setup === 'slow_loris') {
      loris = await slowLorisServer();
      env.ANTHROPIC_BASE_URL = loris.url;
    } else if (c.setup) throw new Error(`unknown setup ${c.setup}`);
    if (c.faults) {
      const text = JSON.stringify(c.faults).split('@JWT@').join(jwt).split('@OVERSIZED@').join('x'.repeat(1024 * 1024 + 1));
      await emu.faults(JSON.parse(text));
    }

    const provider = new wif.Provider({ env });
    let result;
    let err;
    const started = performance.now();
    try {
      if (via === 'sdk') {
        const Anthropic = require('@anthropic-ai/sdk').default;
        const seen = [];
        const credentials = provider.credentials();
        const client = new Anthropic({
          baseURL: emu.baseURL,
          maxRetries: 0,
          credentials: async (o) => {
            const t = await credentials(o);
            seen.push(t);
            return t;
          },
        });
        const reply = await client.messages.create({ model: 'm', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] });
        if (reply.type !== 'message') problems.push(`the SDK call answered ${JSON.stringify(reply).slice(0, 200)}`);
        result = seen[seen.length - 1];
      } else {
        result = await provider.getToken();
      }
    } catch (e) {
      err = e;
    }
    secs = (performance.now() - started) / 1000;

    if (c.max_seconds != null && secs > c.max_seconds) problems.push(`took ${secs.toFixed(1)} s > ${c.max_seconds} s`);
    if (c.min_seconds != null && secs < c.min_seconds) problems.push(`took ${secs.toFixed(1)} s < ${c.min_seconds} s`);

    const expect = c.expect;
    if (expect.outcome === 'token') {
      if (err) {
        problems.push(`expected a token, got ${err.name} [${err.kind}]: ${err.message}`);
      } else if (!result || typeof result.token !== 'string') {
        problems.push(`expected a token, got ${util.inspect(result)}`);
      } else {
        token = result.token;
        const now = Math.floor(Date.now() / 1000);
        const want = expect.expires_in ?? 600;
        if (!(result.expiresAt >= now + want - 10 && result.expiresAt <= now + want + 2)) {
          problems.push(`expiresAt ${result.expiresAt} is not now + ${want}`);
        }
        if (!/^sk-ant-oat01-/.test(token)) problems.push('the token is not an sk-ant-oat01- token');
      }
    } else if (expect.outcome === 'error') {
      if (!err) {
        problems.push(`expected an error [${expect.kind}], got ${util.inspect(result)}`);
      } else {
        const Cls = CLASS_OF[expect.kind];
        if (!(err instanceof wif.WifError)) problems.push(`not a WifError: ${util.inspect(err)}`);
        if (!(err instanceof Cls) || (expect.kind === 'internal' && Object.getPrototypeOf(err) !== wif.WifError.prototype)) {
          problems.push(`expected ${Cls.name}, got ${err && err.name}`);
        }
        if (err.kind !== expect.kind) problems.push(`kind ${err.kind}, expected ${expect.kind}: ${err.message}`);
        if (err.code !== `ANTHROPIC_WIF_${expect.kind.toUpperCase()}`) problems.push(`code ${err.code}`);
        if (expect.status != null && err.status !== expect.status) problems.push(`status ${err.status}, expected ${expect.status}`);
        if (expect.status != null && !err.message.includes(`HTTP ${expect.status}`)) problems.push(`the message does not give HTTP ${expect.status}: ${err.message}`);
        for (const want of expect.contains || []) {
          if (!err.message.toLowerCase().includes(want.toLowerCase())) problems.push(`the message lacks ${JSON.stringify(want)}: ${err.message}`);
        }
        if (err.requestId !== null && typeof err.requestId !== 'string') problems.push(`requestId is ${typeof err.requestId}`);
        if (err.status !== null && !Number.isInteger(err.status)) problems.push(`status is ${err.status}`);
      }
    } else {
      throw new Error(`bad outcome ${expect.outcome}`);
    }
    // No secret in any text of the error, whatever the outcome.
    if (err) {
      for (const [where, text] of Object.entries(errorTexts(err))) {
        const found = leaks(text, [jwt]);
        if (found.length) problems.push(`${where} holds ${found.join(', ')}`);
      }
    }

    if (!c.setup) {
      const stats = await emu.stats();
      if (c.token_requests != null && stats.token_requests !== c.token_requests) {
        problems.push(`the endpoint saw ${stats.token_requests} token requests, expected ${c.token_requests}`);
      }
      if (c.redirects_followed != null && stats.redirects_followed !== c.redirects_followed) {
        problems.push(`${stats.redirects_followed} redirects were followed`);
      }
    }
    // Nothing outside the cache holds a secret; a failed exchange leaves no cache file.
    const cacheDir = sb.path('cache', 'anthropic-wif');
    for (const f of filesUnder(sb.dir)) {
      if (f === jwtFile) continue;
      const text = fs.readFileSync(f, 'latin1');
      const inCache = f.startsWith(cacheDir + path.sep);
      if (text.includes(jwt) || (!inCache && text.includes('sk-ant-oat01-'))) problems.push(`${f} holds a secret`);
      if (inCache && err && f.endsWith('.json')) problems.push(`a failed exchange left a cache file ${f}`);
      if (inCache && token && f.endsWith('.json') && !text.includes(token)) problems.push(`the cache file ${f} does not hold the token`);
    }
  } finally {
    await Promise.all([emu.stop(), loris && loris.close()]);
    sb.cleanup();
  }
  return { name: c.name, via, secs, problems, jwt, token };
}

module.exports = { MATRIX, runCase, leaks, CANARIES };
