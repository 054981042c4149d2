// The emulator and `anthropic-wif proxy` as real processes, for the Node end-to-end tests of the proxy
// (proxy_sdk.test.mjs, proxy_browser.test.mjs). Not a test file itself.
//
// The binaries: $ANTHROPIC_WIF_BIN (the CLI under test) and $ANTHROPIC_WIF_EMULATOR, else the debug builds.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';

const { cliBinary, emulatorBinary } = createRequire(import.meta.url)('../node/_helpers.js');
export const BIN = cliBinary();
const EMULATOR = emulatorBinary();
const RULE = 'fdrl_01TestRule000000000000000';
const ORG = '00000000-0000-4000-8000-000000000001';

/** Spawn `bin ARGS`; `ready` resolves to its JSON ready line. */
function start(bin, args, env) {
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const ready = new Promise((ok, fail) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (l) => ok(JSON.parse(l)));
    child.once('exit', (c) => fail(new Error(`${bin} ${args[0]} exited ${c}: ${stderr}`)));
  });
  return { child, ready, stderr: () => stderr };
}

/**
 * An emulator, a fresh identity token in a file, and a proxy in front of the emulator, in a temporary
 * HOME. `close()` stops both (SIGTERM) and returns the proxy's exit code and log.
 */
export async function proxyStack({ emulatorArgs = [], proxyArgs = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wif-proxy-node-'));
  const env = { PATH: process.env.PATH, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), ANTHROPIC_CONFIG_DIR: join(dir, 'config') };
  const emu = start(EMULATOR, ['--listen', '127.0.0.1:0', ...emulatorArgs], env);
  const emuUrl = (await emu.ready).base_url;
  const jwtFile = join(dir, 'identity-token');
  const s = {
    emuUrl,
    jwtFile,
    /** GET (no body) or POST a JSON body to the emulator's control API. */
    async control(path, body) {
      const init = body === undefined ? {} : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
      return (await fetch(emuUrl + path, init)).json();
    },
    /** Replace the identity token file with a fresh single-use JWT (atomically). */
    async rotateJwt() {
      const { jwt } = await s.control('/_emulator/jwt', {});
      writeFileSync(jwtFile + '.tmp', jwt);
      renameSync(jwtFile + '.tmp', jwtFile);
    },
    async close() {
      const exited = new Promise((ok) => s.proxy.child.once('exit', ok));
      s.proxy.child.kill('SIGTERM');
      const code = await exited;
      emu.child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      return { code, log: s.proxy.stderr() };
    },
  };
  await s.rotateJwt();
  s.proxy = start(BIN, ['proxy', '--listen', '127.0.0.1:0', '--base-url', emuUrl, '--federation-rule-id', RULE,
    '--organization-id', ORG, '--identity-token-file', jwtFile, ...proxyArgs], env);
  s.proxyUrl = (await s.proxy.ready).base_url;
  return s;
}
