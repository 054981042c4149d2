// anthropic-wif for Node.js: a credentials provider for @anthropic-ai/sdk.
//
//   const { Provider } = require('anthropic-wif');
//   const client = new Anthropic({ credentials: new Provider().credentials() });
//
// This file is the thin JS face of the Rust engine: it loads the native addon,
// turns its error records into WifError subclasses, keeps the warm path
// (a fresh token already in memory) synchronous up to the returned promise,
// and hands the engine the caller's environment (see callerEnv).
'use strict';

// The addon: a from-source build next to this file, else the platform package (loader.js).
const { loadAddon } = require('./loader.js');

const native = loadAddon();

const ERROR_MARKER = 'anthropic-wif-error:';
const KINDS = Object.freeze(native.errorKinds());

/**
 * An anthropic-wif failure. `kind` says what to fix: `config` (settings),
 * `identity` (the identity-token source), `denied` (the token endpoint refused
 * the exchange), `unavailable` (it could not be reached or answered badly),
 * `internal` (a local failure). Messages never contain a secret.
 */
class WifError extends Error {
  constructor(message, details) {
    super(message);
    const d = details || {};
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true, writable: true });
    this.kind = d.kind || new.target.kind || 'internal';
    this.code = `ANTHROPIC_WIF_${this.kind.toUpperCase()}`;
    this.status = d.status == null ? null : d.status;
    this.requestId = d.requestId == null ? null : d.requestId;
    this.errorCode = d.errorCode == null ? null : d.errorCode;
  }
}

/** Bad or missing configuration: an option, environment variable, profile file or id. */
class ConfigurationError extends WifError {}
ConfigurationError.kind = 'config';
/** The identity-token source failed (file missing, command failed, empty token, …). */
class IdentitySourceError extends WifError {}
IdentitySourceError.kind = 'identity';
/** The token endpoint refused the exchange (4xx): `status`, `requestId` tell which. */
class ExchangeDeniedError extends WifError {}
ExchangeDeniedError.kind = 'denied';
/** The token endpoint could not be reached, timed out, or kept failing (5xx/429). */
class EndpointUnavailableError extends WifError {}
EndpointUnavailableError.kind = 'unavailable';

const CLASSES = {
  config: ConfigurationError,
  identity: IdentitySourceError,
  denied: ExchangeDeniedError,
  unavailable: EndpointUnavailableError,
  // `internal` (a local failure: cache I/O, lock time-out, …) is a plain WifError.
  internal: WifError,
};

for (const kind of KINDS) {
  if (!CLASSES[kind]) throw new Error(`anthropic-wif: the native addon reports an unknown error kind ${kind}; reinstall the package`);
}

/** Maps the engine's one serialised error form (`kind`, `message`, `status`, `request_id`, `error_code`). */
function fromRecord(rec) {
  const Cls = CLASSES[rec.kind] || WifError;
  return new Cls(rec.message, { kind: rec.kind, status: rec.status, requestId: rec.request_id, errorCode: rec.error_code });
}

/** Maps a thrown native error (marker + JSON) to a WifError; anything else passes through. */
function fromThrown(e) {
  const msg = e && typeof e.message === 'string' ? e.message : '';
  if (msg.startsWith(ERROR_MARKER)) {
    try {
      return fromRecord(JSON.parse(msg.slice(ERROR_MARKER.length)));
    } catch {
      return new WifError('anthropic-wif: unreadable error from the native addon', { kind: 'internal' });
    }
  }
  return e;
}

function unwrap(outcome) {
  if (outcome.error) throw fromRecord(JSON.parse(outcome.error));
  return outcome.token;
}

function callNative(fn) {
  try {
    return fn();
  } catch (e) {
    throw fromThrown(e);
  }
}

const kNative = Symbol('anthropic-wif.native');
const kCredentials = Symbol('anthropic-wif.credentials');
const kCallerEnv = Symbol('anthropic-wif.callerEnv');

/**
 * A copy of this thread's `process.env`, taken here, on the JS thread: the
 * environment the engine resolves from and its identity sources read. The
 * engine never reads the process environment itself: on its own threads that
 * would race this program's writes to `process.env` (a crash), and in a
 * worker it would see the main thread's variables instead of the worker's.
 */
function callerEnv() {
  return { ...process.env };
}

/** Whether `options` fixes the environment (the `env` option); else the caller's is used. */
function fixesEnv(options) {
  return !!options && options.env !== undefined && options.env !== null;
}

/**
 * A source of Claude API access tokens through workload identity federation.
 *
 * With no options it resolves its configuration exactly like the
 * `anthropic-wif` CLI with no flags (environment variables, then profiles
 * under `~/.config/anthropic/`). Each Provider has its own in-memory cache with
 * single-flight refresh; the on-disk cache is shared with the CLI, Python and
 * the official SDKs.
 */
class Provider {
  #generation = 0;
  #token = '';
  #expiresAt = null;
  #callerEnv = true;

  constructor(options) {
    const handle = options && options[kNative];
    const json = handle ? null : toJson(options, 'new Provider(options)');
    // Without the `env` option, every call that may exchange takes a fresh
    // copy of process.env: identity sources read variables at each exchange.
    this.#callerEnv = handle ? options[kCallerEnv] : !fixesEnv(options);
    Object.defineProperty(this, kNative, {
      // (With the `env` option, the addon takes only ANTHROPIC_WIF_LOG from this copy.)
      value: handle || callNative(() => new native.NativeProvider(json, callerEnv())),
      enumerable: false,
    });
    const self = this;
    // One stable function per provider, as `new Anthropic({ credentials })` expects.
    Object.defineProperty(this, kCredentials, {
      value: function credentials(opts) {
        return self.getToken(opts);
      },
      enumerable: false,
    });
  }

  /**
   * A token with enough life left: from memory (no I/O), the disk cache, or a
   * new exchange run off the event loop. `forceRefresh` skips both caches.
   * Resolves `{ token, expiresAt }` (`expiresAt` in unix seconds, or `null`
   * for a static bearer token that does not expire).
   */
  getToken(opts) {
    const force = !!(opts && opts.forceRefresh);
    const nat = this[kNative];
    try {
      if (!force) {
        // Warm path: a fresh token in memory, checked synchronously without I/O.
        // The addon answers with just a generation number when the token is
        // the one already held here, so no strings cross the boundary.
        const warm = nat.warm(this.#generation);
        if (warm !== null) {
          if (warm !== this.#generation) {
            this.#generation = warm.generation;
            this.#token = warm.token;
            this.#expiresAt = warm.expiresAt;
          }
          return Promise.resolve({ token: this.#token, expiresAt: this.#expiresAt });
        }
      }
      return nat.token(force, this.#callerEnv ? callerEnv() : null).then(unwrap);
    } catch (e) {
      return Promise.reject(fromThrown(e));
    }
  }

  /** The function `new Anthropic({ credentials })` expects (the same one on every call). */
  credentials() {
    return this[kCredentials];
  }

  /**
   * A provider exchanging against another deployment (the SDK's
   * `for_base_url`). When a profile or an explicit option pins the base URL,
   * or it is the same URL, the result shares this provider's caches.
   */
  forBaseURL(baseURL) {
    if (typeof baseURL !== 'string') {
      throw new ConfigurationError(`provider.forBaseURL(baseURL): baseURL must be a string, got ${typeof baseURL}`, { kind: 'config' });
    }
    const nat = this[kNative];
    const other = callNative(() => nat.forBaseUrl(baseURL));
    return new Provider({ [kNative]: other, [kCallerEnv]: this.#callerEnv });
  }

  /** Forget the in-memory token; the next getToken re-checks the disk cache. */
  invalidate() {
    this[kNative].invalidate();
  }

  /** The settings given, as core shows them (never a secret): `Provider { federationRuleId: 'fdrl_…', … }`. */
  [Symbol.for('nodejs.util.inspect.custom')]() {
    const shown = this[kNative].summary().map(([name, value]) => `${name}: ${value}`);
    return shown.length ? `Provider { ${shown.join(', ')} }` : 'Provider {}';
  }

  toJSON() {
    return {};
  }
}

/**
 * `value` as JSON for the engine's one options parser, which checks it (an
 * object, known option names, types, ranges). `undefined` and `null` mean
 * "no options"; numbers JSON cannot hold (NaN, Infinity) and BigInts are sent
 * as text, so they are refused by name instead of turning into `null`.
 */
function toJson(value, call) {
  let json;
  try {
    json = JSON.stringify(value === undefined ? null : value, (_key, v) =>
      typeof v === 'bigint' || (typeof v === 'number' && !Number.isFinite(v)) ? String(v) : v);
  } catch (e) {
    throw new ConfigurationError(`${call}: the options must be plain data (${e.message})`, { kind: 'config' });
  }
  if (json === undefined) {
    throw new ConfigurationError(`${call}: the options must be an object, got ${typeof value}`, { kind: 'config' });
  }
  return json;
}

/**
 * Diagnose a configuration: the same report as `anthropic-wif doctor --json`,
 * computed off the event loop. `options` are `new Provider(options)`'s (none:
 * resolve like the CLI with no flags); `doctorOptions.exchange` also makes
 * one real exchange (which consumes the identity token and caches the access
 * token), `doctorOptions.expectedAudience` is the audience the federation
 * rule expects. Resolves the report whatever it finds (`report.healthy`,
 * `report.findings`); rejects only on malformed arguments (ConfigurationError).
 * The report never holds the identity token or the access token (only masked).
 */
function doctor(options, doctorOptions) {
  try {
    const json = toJson(options, 'doctor(options)');
    const djson = toJson(doctorOptions, 'doctor(options, doctorOptions)');
    return callNative(() => native.doctor(json, djson, callerEnv())).then((outcome) => {
      if (outcome.error) throw fromRecord(JSON.parse(outcome.error));
      return JSON.parse(outcome.json);
    });
  } catch (e) {
    return Promise.reject(fromThrown(e));
  }
}

const VERSION = native.engineVersion();

module.exports = {
  Provider,
  doctor,
  WifError,
  ConfigurationError,
  IdentitySourceError,
  ExchangeDeniedError,
  EndpointUnavailableError,
  ERROR_KINDS: KINDS,
  VERSION,
};
