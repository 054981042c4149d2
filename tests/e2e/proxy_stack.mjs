// The emulator and `anthropic-wif proxy` as real processes, for the Node end-to-end tests of the proxy
// (proxy_sdk.test.mjs, proxy_browser.test.mjs) and of Claude Code (claude_code.mjs). Not a test file
// itself.
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

/** The flags that point an `anthropic-wif` command at the emulator with a test rule and a token file. */
export function federationArgs(baseUrl, jwtFile) {
  return ['--base-url', baseUrl, '--federation-rule-id', RULE, '--organization-id', ORG, '--identity-token-file', jwtFile];
}

/** Spawn `anthropic-wif ARGS`; `ready` resolves to its JSON ready line. */
export function spawnWif(args, env) {
  return spawnReady(BIN, args, env);
}

/** Spawn `bin ARGS`; `ready` resolves to its JSON ready line. */
function spawnReady(bin, args, env) {
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
 * The emulator as a process on a free loopback port: the one place the end-to-end tests start it.
 * Resolves when it is ready, to `{ child, url, stderr() }`; stop it with `child.kill('SIGTERM')`.
 */
export async function startEmulator(env, args = []) {
  const emu = spawnReady(EMULATOR, ['--listen', '127.0.0.1:0', ...args], env);
  return { child: emu.child, url: (await emu.ready).base_url, stderr: emu.stderr };
}

/**
 * An emulator and a fresh identity token in a file, in a temporary HOME. `startProxy()` puts
 * `anthropic-wif proxy` in front of the emulator (sets `proxy` and `proxyUrl`); `close()` stops
 * both (SIGTERM) and returns the proxy's exit code and log (null and '' without a proxy).
 */
export async function emulatorStack({ emulatorArgs = [], prefix = 'wif-e2e-' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { PATH: process.env.PATH, HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), ANTHROPIC_CONFIG_DIR: join(dir, 'config') };
  const emu = await startEmulator(env, emulatorArgs);
  const emuUrl = emu.url;
  const jwtFile = join(dir, 'identity-token');
  const s = {
    dir,
    env,
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
    /** Start `anthropic-wif proxy` in front of the emulator, exchanging the identity token file. */
    async startProxy(proxyArgs = []) {
      s.proxy = spawnWif(['proxy', '--listen', '127.0.0.1:0', ...federationArgs(emuUrl, jwtFile), ...proxyArgs], env);
      s.proxyUrl = (await s.proxy.ready).base_url;
      return s.proxyUrl;
    },
    async close() {
      let code = null;
      if (s.proxy) {
        const exited = s.proxy.child.exitCode !== null ? s.proxy.child.exitCode : new Promise((ok) => s.proxy.child.once('exit', ok));
        s.proxy.child.kill('SIGTERM');
        code = await exited;
      }
      emu.child.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
      return { code, log: s.proxy ? s.proxy.stderr() : '' };
    },
  };
  await s.rotateJwt();
  return s;
}

/** An [emulatorStack] with the proxy started. */
export async function proxyStack({ emulatorArgs = [], proxyArgs = [] } = {}) {
  const s = await emulatorStack({ emulatorArgs, prefix: 'wif-proxy-node-' });
  await s.startProxy(proxyArgs);
  return s;
}
