// Type declarations for anthropic-wif (CommonJS entry `index.js`).
// index.d.mts re-exports these for the ESM entry `index.mjs`.

/**
 * Where the identity JWT comes from: the same discriminated union as a
 * profile's `authentication.identity_token` (and the CLI's `--identity-token`).
 * Every source is read afresh at each exchange.
 */
export type IdentityTokenSource =
  /** A file, re-read at every exchange (projected Kubernetes tokens rotate). */
  | { source: 'file'; path: string }
  /** An environment variable holding the JWT itself. */
  | { source: 'env'; var: string }
  /** A program run without a shell; its stdout is the token. */
  | { source: 'command'; command: string[]; timeout_s?: number }
  /** An HTTP GET; `${VAR}` is expanded from the environment in the URL and header values. */
  | { source: 'url'; url: string; headers?: Record<string, string>; field?: string }
  /** GitHub Actions OIDC (needs `permissions: id-token: write`). */
  | { source: 'github_actions'; audience?: string };

/**
 * Options of `new Provider(options)`: the CLI's flags in camelCase. Unset
 * options are resolved exactly like the CLI with no flags (environment
 * variables, then the profile chain). Unknown options are a `ConfigurationError`.
 */
export interface ProviderOptions {
  /** A profile name under `<configDir>/configs/<profile>.json`. */
  profile?: string;
  /** `fdrl_…` */
  federationRuleId?: string;
  /** The organization UUID. */
  organizationId?: string;
  /** `svac_…` */
  serviceAccountId?: string;
  /** `wrkspc_…` or `default`. */
  workspaceId?: string;
  /** API base URL (`https://` only, plain `http://` just for loopback hosts). */
  baseURL?: string;
  /** The identity-token source. */
  identityToken?: IdentityTokenSource;
  /** The config dir (default `$ANTHROPIC_CONFIG_DIR`, else `~/.config/anthropic`). */
  configDir?: string;
  /** The on-disk token cache file (default: the profile's, shared with the SDKs). */
  credentialsPath?: string;
  /** Do not read or write the on-disk token cache (nor take its lock). Default `false`. */
  noCache?: boolean;
  /**
   * Hand out only tokens with at least this many seconds of life left
   * (default: the refresh policy alone, as the SDK keeps its own cache).
   */
  minRemaining?: number;
  /**
   * The environment to resolve from, instead of the live process environment
   * (nothing else is visible). Useful in worker threads and tests.
   */
  env?: Record<string, string | undefined>;
}

/** An access token: `expiresAt` in unix seconds, `null` for one that does not expire. */
export interface AccessToken {
  token: string;
  expiresAt: number | null;
}

export interface GetTokenOptions {
  /** Skip the memory and disk caches and exchange again (the SDK sets it after a 401). */
  forceRefresh?: boolean;
}

/** What `new Anthropic({ credentials })` expects. */
export type CredentialsFunction = (opts?: GetTokenOptions) => Promise<AccessToken>;

export type ErrorKind = 'config' | 'identity' | 'denied' | 'unavailable' | 'internal';

/**
 * Every anthropic-wif failure; `kind: 'internal'` (a local failure: cache I/O,
 * lock time-out, …) arrives as a plain WifError. Messages never contain a token or a JWT.
 */
export declare class WifError extends Error {
  constructor(message: string, details?: { kind?: ErrorKind; status?: number | null; requestId?: string | null; errorCode?: string | null });
  /** What to fix. */
  readonly kind: ErrorKind;
  /** `ANTHROPIC_WIF_CONFIG`, `ANTHROPIC_WIF_DENIED`, … */
  readonly code: string;
  /** The token endpoint's HTTP status, when it answered. */
  readonly status: number | null;
  /** The `request-id` of the token endpoint's answer, when it answered. */
  readonly requestId: string | null;
  /** The RFC 6749 `error` code (or the Anthropic error `type`), when given. */
  readonly errorCode: string | null;
}
/** Bad or missing configuration: an option, environment variable, profile file or id. */
export declare class ConfigurationError extends WifError {
  readonly kind: 'config';
  static readonly kind: 'config';
}
/** The identity-token source failed (file missing, command failed, empty token, …). */
export declare class IdentitySourceError extends WifError {
  readonly kind: 'identity';
  static readonly kind: 'identity';
}
/** The token endpoint refused the exchange (a 4xx answer). */
export declare class ExchangeDeniedError extends WifError {
  readonly kind: 'denied';
  static readonly kind: 'denied';
}
/** The token endpoint could not be reached, timed out, or kept failing. */
export declare class EndpointUnavailableError extends WifError {
  readonly kind: 'unavailable';
  static readonly kind: 'unavailable';
}

/**
 * A source of Claude API access tokens through workload identity federation.
 *
 * ```ts
 * const client = new Anthropic({ credentials: new Provider().credentials() });
 * ```
 */
export declare class Provider {
  /** @throws {ConfigurationError} on bad options or configuration. */
  constructor(options?: ProviderOptions);
  /** A token with enough life left: memory (no I/O), disk cache, or a new exchange off the event loop. */
  getToken(opts?: GetTokenOptions): Promise<AccessToken>;
  /** The function `new Anthropic({ credentials })` expects; the same function on every call. */
  credentials(): CredentialsFunction;
  /** A provider for another deployment, unless a profile or an explicit option pins the base URL. */
  forBaseURL(baseURL: string): Provider;
  /** Forget the in-memory token; the next `getToken` re-checks the disk cache. */
  invalidate(): void;
}

/** The error kinds, in the engine's order. */
export declare const ERROR_KINDS: readonly ErrorKind[];
/** The engine version. */
export declare const VERSION: string;
