// The real Claude Code against the emulator, for the end-to-end tests of each way of running it with
// federated tokens (claude_code.test.mjs). Not a test file itself.
//
// - ensureClaude(): installs the release pinned in tests/e2e/claude-code/package-lock.json from the npm
//   registry into a tools directory (WIF_TOOLS_DIR, default <repo>/.tools; outside the package's
//   dependencies), once: later calls find it there. `npm ci --ignore-scripts`, then the package's own
//   install.cjs (the postinstall that npm 11 skips: it hard-links or copies the platform package's native
//   binary over the bin/claude.exe placeholder, nothing else, no network). CLAUDE_CODE_BIN uses another
//   claude binary instead.
// - claudeStack(): an emulator (and, on demand, `anthropic-wif proxy`) from proxy_stack.mjs, plus
//   `run(opts)`: `claude -p PROMPT --model MODEL` in a private HOME and config dir, with no API key, no
//   inherited environment but PATH, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, and `opts.env` on top;
//   it resolves to Claude Code's exit and output and the API requests the emulator recorded meanwhile
//   (headers and status, from GET /_emulator/api-requests). It never hangs: `timeoutMs` bounds it, and
//   `stopWhen(requests)` ends it early (e.g. once Claude Code has been refused twice).
//
// Adding a path is a few lines in a test, e.g. a daemon that keeps a profile's credentials fresh:
//   const d = s.spawn(['daemon', ...s.federationArgs(), ...]);   // any anthropic-wif command, same HOME
//   const r = await s.run({ env: { ANTHROPIC_PROFILE: 'p', ANTHROPIC_CONFIG_DIR: dir } });
//   assert.equal(r.code, 0); r.requests[0].headers['anthropic-beta'] …
// and for a wrapper such as `exec`: `s.run({ wrap: [BIN, 'exec', ...s.federationArgs(), '--'] })`.
//
// As a script, `node tests/e2e/claude_code.mjs install` installs (or finds) Claude Code and prints the
// path of its binary (scripts/test.sh does this before the tests, so the time it takes shows apart).
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BIN, emulatorStack, federationArgs, spawnWif } from './proxy_stack.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const PIN_DIR = join(HERE, 'claude-code');
const PACKAGE = '@anthropic-ai/claude-code';

/** The pinned Claude Code release. */
export const CLAUDE_CODE_VERSION = JSON.parse(readFileSync(join(PIN_DIR, 'package.json'), 'utf8')).dependencies[PACKAGE];
/** A model id this Claude Code release knows (no "unrecognized model" warning); the emulator serves any. */
export const MODEL = 'claude-haiku-4-5';
/** What the emulator answers every message with. */
export const REPLY = 'Hello! This is the anthropic-wif emulator answering in place of Claude.';

function toolsDir() {
  return resolve(process.env.WIF_TOOLS_DIR || join(ROOT, '.tools'));
}

/** The version a claude binary reports, or null when it does not run. */
function versionOf(bin) {
  // `--version` writes nothing under HOME (checked with an empty one).
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH, HOME: tmpdir() } });
  return r.status === 0 ? r.stdout.trim().split(/\s+/)[0] : null;
}

/** The tools directory must be ours and not writable by others: we run what it holds. */
function checkOwned(dir) {
  const st = statSync(dir);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new Error(`${dir} belongs to uid ${st.uid}, not to us; remove it or set WIF_TOOLS_DIR to a directory of our own`);
  }
  if (st.mode & 0o022) {
    throw new Error(`${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it`);
  }
}

function run(cmd, args, cwd, what) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 15 * 60_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new Error(`${what} failed (${r.error ? r.error.message : `exit ${r.status}`}):\n${tail}`);
  }
}

/**
 * The path of the pinned Claude Code binary, installed from the npm registry into the tools directory
 * on first use (atomically: a temporary directory renamed into place), found there afterwards.
 */
export function ensureClaude() {
  if (process.env.CLAUDE_CODE_BIN) return process.env.CLAUDE_CODE_BIN;
  const lock = readFileSync(join(PIN_DIR, 'package-lock.json'));
  const key = createHash('sha256').update(lock).digest('hex').slice(0, 12);
  const tools = toolsDir();
  const dir = join(tools, `claude-code-${CLAUDE_CODE_VERSION}-${key}`);
  const bin = join(dir, 'node_modules', ...PACKAGE.split('/'), 'bin', 'claude.exe');
  mkdirSync(tools, { recursive: true, mode: 0o700 });
  checkOwned(tools);
  if (existsSync(bin) && versionOf(bin) === CLAUDE_CODE_VERSION) return bin;
  rmSync(dir, { recursive: true, force: true });
  const tmp = mkdtempSync(join(tools, '.claude-code-'));
  try {
    copyFileSync(join(PIN_DIR, 'package.json'), join(tmp, 'package.json'));
    copyFileSync(join(PIN_DIR, 'package-lock.json'), join(tmp, 'package-lock.json'));
    // Registry only; the npm cache makes a re-install offline. The lock pins every tarball's hash.
    run('npm', ['ci', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], tmp,
      `npm ci ${PACKAGE}@${CLAUDE_CODE_VERSION} in ${tmp}`);
    run(process.execPath, ['install.cjs'], join(tmp, 'node_modules', ...PACKAGE.split('/')), `${PACKAGE}'s install.cjs`);
    const got = versionOf(join(tmp, 'node_modules', ...PACKAGE.split('/'), 'bin', 'claude.exe'));
    if (got !== CLAUDE_CODE_VERSION) throw new Error(`the installed claude reports version ${got}, expected ${CLAUDE_CODE_VERSION}`);
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(bin) && versionOf(bin) === CLAUDE_CODE_VERSION) return bin; // another process won the race
    throw e;
  }
  return bin;
}

/** Stop a process group: SIGTERM, then SIGKILL if it lingers. */
function killGroup(child) {
  const kill = (sig) => { try { process.kill(-child.pid, sig); } catch { /* already gone */ } };
  kill('SIGTERM');
  const t = setTimeout(() => kill('SIGKILL'), 3000);
  t.unref();
}

/**
 * An emulator (and, on demand, a proxy) and everything to run Claude Code against it; see the top of
 * this file. `close()` stops every process it started.
 */
export async function claudeStack({ emulatorArgs = [] } = {}) {
  const claude = ensureClaude();
  const s = await emulatorStack({ emulatorArgs, prefix: 'wif-claude-' });
  const groups = new Set(); // claude runs, each in its own process group
  const children = new Set(); // anthropic-wif commands from spawn()
  let runs = 0;
  const closeStack = s.close;
  Object.assign(s, {
    claude,
    /** Flags pointing an anthropic-wif command at the emulator (call `rotateJwt()` before each exchange). */
    federationArgs: () => federationArgs(s.emuUrl, s.jwtFile),
    /** Run an anthropic-wif command to completion in the stack's HOME: `{ code, stdout, stderr }`. */
    wif(args, env = {}) {
      const r = spawnSync(BIN, args, { encoding: 'utf8', timeout: 60_000, env: { ...s.env, ...env } });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    },
    /** Start a long-running anthropic-wif command (one that prints a JSON ready line); stopped by close(). */
    spawn(args, env = {}) {
      const p = spawnWif(args, { ...s.env, ...env });
      children.add(p.child);
      return p;
    },
    /**
     * A `user_oauth` profile without `client_id` (the externally rotated shape every official SDK and
     * Claude Code read) and its credentials file in the SDKs' format, 0600 in 0700 directories, in a new
     * config dir; `profile` adds top-level fields (e.g. `base_url`). Returns the config dir.
     */
    userOauthProfile(name, { accessToken, expiresAt, profile = {} }) {
      const configDir = join(s.dir, `config-${name}-${++runs}`);
      for (const sub of ['configs', 'credentials']) mkdirSync(join(configDir, sub), { recursive: true, mode: 0o700 });
      const write = (sub, v) => writeFileSync(join(configDir, sub, `${name}.json`), JSON.stringify(v), { mode: 0o600, flag: 'wx' });
      write('configs', { version: '1.0', ...profile, authentication: { type: 'user_oauth' } });
      write('credentials', { version: '1.0', type: 'oauth_token', access_token: accessToken, expires_at: expiresAt });
      return configDir;
    },
    /** The API requests the emulator has recorded so far. */
    apiRequests: () => s.control('/_emulator/api-requests'),
    /**
     * Run `claude -p` and wait for it (bounded). Options: `env` (on top of the private base), `wrap`
     * (an argv to run claude under, e.g. `[BIN, 'exec', …, '--']`), `settings` (Claude Code's user
     * settings.json, e.g. `{ apiKeyHelper }`), `prompt`, `model`, `timeoutMs` (default 60 s),
     * `stopWhen(requests)` (polled; true ends the run). Resolves to `{ code, signal, stdout, stderr,
     * timedOut, stopped, ms, home, requests }`.
     */
    async run({ env = {}, wrap = [], settings, prompt = 'Say hello', model = MODEL, timeoutMs = 60_000, stopWhen } = {}) {
      const home = join(s.dir, `claude-home-${++runs}`);
      mkdirSync(join(home, '.claude'), { recursive: true, mode: 0o700 });
      if (settings) writeFileSync(join(home, '.claude', 'settings.json'), JSON.stringify(settings), { mode: 0o600 });
      const base = {
        PATH: process.env.PATH,
        HOME: home,
        CLAUDE_CONFIG_DIR: join(home, '.claude'),
        XDG_CACHE_HOME: join(home, '.cache'),
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_AUTOUPDATER: '1',
      };
      const before = (await s.apiRequests()).length;
      const argv = [...wrap, claude, '-p', prompt, '--model', model];
      const t0 = performance.now();
      const child = spawn(argv[0], argv.slice(1), { cwd: home, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      groups.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const exited = new Promise((ok) => child.once('close', (code, signal) => ok({ code, signal })));
      let timedOut = false;
      let stopped = false;
      const timer = setTimeout(() => { timedOut = true; killGroup(child); }, timeoutMs);
      let polling = !!stopWhen;
      let pollError = null;
      const poll = (async () => {
        while (polling) {
          await new Promise((ok) => setTimeout(ok, 200));
          if (!polling) break;
          try {
            if (stopWhen((await s.apiRequests()).slice(before))) { stopped = true; killGroup(child); break; }
          } catch (e) {
            pollError = e;
            killGroup(child);
            break;
          }
        }
      })();
      const { code, signal } = await exited;
      polling = false;
      clearTimeout(timer);
      await poll;
      if (pollError) throw pollError;
      groups.delete(child);
      const ms = Math.round(performance.now() - t0);
      return { code, signal, stdout, stderr, timedOut, stopped, ms, home, requests: (await s.apiRequests()).slice(before) };
    },
    async close() {
      for (const g of groups) killGroup(g);
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      return closeStack();
    },
  });
  return s;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] !== 'install') {
    console.error('usage: node tests/e2e/claude_code.mjs install');
    process.exit(2);
  }
  try {
    console.log(ensureClaude());
  } catch (e) {
    console.error(`claude_code.mjs: cannot install Claude Code: ${e.message}`);
    process.exit(1);
  }
}
