// Type declarations for anthropic-wif (CommonJS entry `index.js`).
// index.d.mts re-exports these for the ESM entry `index.mjs`.

/**
 * Where the identity JWT comes from: the same discriminated union as a
 * profile's `authentication.identity_token` (and the CLI's `--identity-token`),
 * field names in snake_case as in the profile file. Every source is read
 * afresh at each exchange, trimmed, and an empty result is an error naming it.
 * Presets that request a token take `audience` (default
 * `https://api.anthropic.com`); the CI-variable presets and `kubernetes` get
 * their audience from the platform. See docs/platforms.md.
 *
 * Profiles using anything but `file` need anthropic-wif as the provider (the
 * official SDKs implement only `file`).
 */
export type IdentityTokenSource =
  | FileIdentitySource
  | EnvIdentitySource
  | CommandIdentitySource
  | UrlIdentitySource
  | GithubActionsIdentitySource
  | GitlabIdentitySource
  | CircleciIdentitySource
  | BitbucketIdentitySource
  | TerraformIdentitySource
  | GcpMetadataIdentitySource
  | AzureImdsIdentitySource
  | KubernetesIdentitySource
  | AwsStsIdentitySource
  | SpiffeIdentitySource
  | AutoIdentitySource
  | LiteralIdentitySource;

/** The name of every identity-token source (the union's `source` tag). */
export type IdentitySourceName = IdentityTokenSource['source'];

/** A file, re-read at every exchange (projected Kubernetes tokens rotate). */
export interface FileIdentitySource {
  source: 'file';
  path: string;
}
/** An environment variable holding the JWT itself. */
export interface EnvIdentitySource {
  source: 'env';
  /** The variable's name; default `ANTHROPIC_IDENTITY_TOKEN` (PHP's default). */
  var?: string;
}
/**
 * A program run without a shell, inheriting the environment; its stdout is the
 * token (bounded output), stderr goes into the error message.
 */
export interface CommandIdentitySource {
  source: 'command';
  /** argv: `[program, ...args]`. */
  command: string[];
  /** Kill it after this many seconds (default 30). */
  timeout_s?: number;
}
/**
 * An HTTP GET (no redirects, 1 MiB cap, 30 s time-out); `${VAR}` is expanded
 * from the environment in the URL and header values. Plain `http://` only for
 * loopback and the metadata hosts.
 */
export interface UrlIdentitySource {
  source: 'url';
  url: string;
  headers?: Record<string, string>;
  /** A top-level JSON string field holding the token; without it the trimmed body is the token. */
  field?: string;
}
/**
 * GitHub Actions OIDC: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…` with
 * `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, JSON field `value`.
 * The job needs `permissions: id-token: write`.
 */
export interface GithubActionsIdentitySource {
  source: 'github_actions';
  audience?: string;
}
/** GitLab CI: the job's `id_tokens:` variable (default `ANTHROPIC_ID_TOKEN`); the audience is set in the YAML. */
export interface GitlabIdentitySource {
  source: 'gitlab';
  var?: string;
}
/** CircleCI: `CIRCLE_OIDC_TOKEN_V2` (audience = the organization id). */
export interface CircleciIdentitySource {
  source: 'circleci';
  var?: string;
}
/** Bitbucket Pipelines: `BITBUCKET_STEP_OIDC_TOKEN` (the step needs `oidc: true`). */
export interface BitbucketIdentitySource {
  source: 'bitbucket';
  var?: string;
}
/**
 * HCP Terraform: `TFC_WORKLOAD_IDENTITY_TOKEN` (set `TFC_WORKLOAD_IDENTITY_AUDIENCE`);
 * a tagged audience yields `TFC_WORKLOAD_IDENTITY_TOKEN_<TAG>`: give that name in `var`.
 */
export interface TerraformIdentitySource {
  source: 'terraform';
  var?: string;
}
/**
 * Google Cloud metadata server identity token (`Metadata-Flavor: Google`,
 * `format=full`). `GCE_METADATA_HOST` overrides the host.
 */
export interface GcpMetadataIdentitySource {
  source: 'gcp_metadata';
  audience?: string;
}
/**
 * Azure managed identity: IMDS (`Metadata: true`, field `access_token`), or
 * `$IDENTITY_ENDPOINT` with `X-IDENTITY-HEADER` on App Service, Functions and
 * Container Apps. `AZURE_IMDS_ENDPOINT` overrides the IMDS base URL.
 */
export interface AzureImdsIdentitySource {
  source: 'azure_imds';
  /** The resource requested (default `https://api.anthropic.com`). */
  audience?: string;
  /** A user-assigned identity's client id. */
  client_id?: string;
}
/**
 * A projected service-account token file (default
 * `/var/run/secrets/anthropic.com/token`, or `$ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH`);
 * the audience is the volume's `serviceAccountToken.audience`.
 */
export interface KubernetesIdentitySource {
  source: 'kubernetes';
  path?: string;
}
/**
 * AWS STS `GetWebIdentityToken`, SigV4-signed with the workload's AWS
 * credentials (environment, shared files, web identity, container or EC2
 * instance credentials), sent to the regional endpoint.
 */
export interface AwsStsIdentitySource {
  source: 'aws_sts';
  audience?: string;
  /** Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the AWS profile's region, else the EC2 instance's. */
  region?: string;
  /** 60…3600, default 300. */
  duration_seconds?: number;
  /** `RS256` (default) or `ES384`. */
  signing_algorithm?: 'RS256' | 'ES384';
}
/**
 * SPIFFE JWT-SVID: from the Workload API (`socket`, default
 * `$SPIFFE_ENDPOINT_SOCKET`), or from a file a spiffe-helper writes (`path`).
 */
export interface SpiffeIdentitySource {
  source: 'spiffe';
  audience?: string;
  /** `unix:///run/spire/sockets/agent.sock` */
  socket?: string;
  /** Pick one of several identities. */
  spiffe_id?: string;
  /** A JWT-SVID file written by spiffe-helper (instead of the Workload API). */
  path?: string;
}
/**
 * Detect the platform from the environment (GitHub Actions, GitLab, CircleCI,
 * Bitbucket, Terraform, SPIFFE, Kubernetes, Azure App Service, AWS, then the
 * metadata servers); see docs/platforms.md for the order.
 */
export interface AutoIdentitySource {
  source: 'auto';
  audience?: string;
}
/**
 * An identity token written in the configuration itself (the Java and PHP
 * SDKs' `value`/`literal` sources, for profiles those SDKs share). It is never
 * shown, and like any identity token it serves one exchange: prefer a file or
 * a variable.
 */
export interface LiteralIdentitySource {
  source: 'literal';
  token: string;
}

/**
 * Options of `new Provider(options)`: the CLI's flags in camelCase. Unset
 * options are resolved exactly like the CLI with no flags (environment
 * variables, then the profile chain). The engine's one options table parses
 * and checks them (docs/design.md §11): an unknown option ("did you mean …?"),
 * a value of the wrong type or out of range is a `ConfigurationError` naming
 * the option, with the message the CLI and the Python module give. An
 * explicit `''` is passed on: `serviceAccountId: ''` leaves the id out instead
 * of taking `ANTHROPIC_SERVICE_ACCOUNT_ID`.
 */
export interface ProviderOptions {
  /** A profile name under `<configDir>/configs/<profile>.json`. */
  profile?: string;
  /** `fdrl_…` */
  federationRuleId?: string;
  /** The organization UUID. */
  organizationId?: string;
  /** `svac_…`; `''` leaves it out. */
  serviceAccountId?: string;
  /** `wrkspc_…` or `default`; `''` leaves it out. */
  workspaceId?: string;
  /** API base URL (`https://` only, plain `http://` just for loopback hosts). */
  baseURL?: string;
  /** The config dir (default `$ANTHROPIC_CONFIG_DIR`, else `~/.config/anthropic`). */
  configDir?: string;
  /** The on-disk token cache file (default: the profile's, shared with the SDKs). */
  credentialsPath?: string;
  /** The identity-token source. */
  identityToken?: IdentityTokenSource;
  /**
   * Do not read or write the on-disk token cache (nor take its lock); the
   * record of presented identity tokens is still kept. Default `false`.
   */
  noCache?: boolean;
  /**
   * Hand out only tokens with at least this many seconds of life left, a
   * whole number from 0 to 86400 (default: the refresh policy alone, as the
   * SDK keeps its own cache).
   */
  minRemaining?: number;
  /**
   * How long, in seconds, to wait for another process (or another provider
   * of this process) that holds the on-disk cache lock (it is exchanging);
   * then fail with a `WifError` of kind `internal`. 0 to 3600, default 60.
   */
  lockTimeout?: number;
  /**
   * When the identity token was already exchanged on this machine and no
   * cached access token is usable: how long, in seconds, to wait for the
   * token file to be rotated (or to ask a minting source again) before
   * failing. 0 to 600, default 60.
   */
  rotationWait?: number;
  /**
   * The environment to resolve from and for identity sources to read
   * (nothing else is visible), fixed for the provider's life. Default: a copy
   * of the calling thread's `process.env` (in a worker, the worker's own),
   * taken at construction and again at every call that may exchange, so a
   * variable the program sets later (a fresh identity token) is used. The
   * engine never reads the process environment itself. `ANTHROPIC_WIF_LOG`
   * is read from `process.env` either way.
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
  /**
   * The RFC 6749 `error` code (or the Anthropic error `type`), when given; or the engine's own code,
   * e.g. `identity_token_consumed` / `identity_token_expired` (an identity token that was not sent).
   */
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
  /**
   * A token with enough life left: memory (no I/O), disk cache, or a new
   * exchange off the event loop. Resolves `{ token, expiresAt }`: `expiresAt`
   * in unix seconds, or `null` for a static bearer token that does not expire.
   */
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

/** Options of `doctor(options, doctorOptions)`. */
export interface DoctorOptions {
  /**
   * Also make one real exchange. That **consumes** the identity token (the
   * server accepts each one once); the access token obtained is written to the
   * on-disk cache (unless `noCache`). Skipped when the checks found an error.
   */
  exchange?: boolean;
  /** The audience the federation rule expects (default: the preset's `audience`, else `https://api.anthropic.com`). */
  expectedAudience?: string;
}

/** `error` makes a report unhealthy; `warning` and `info` do not. */
export type DoctorSeverity = 'error' | 'warning' | 'info';

/** One thing the diagnosis found. `code` is stable (see docs/doctor.md). */
export interface DoctorFinding {
  /** e.g. `config_error`, `invalid_id`, `jwt_expired`, `jwt_audience_mismatch`, `exchange_failed`. */
  code: string;
  severity: DoctorSeverity;
  /** For errors: the error kind (what the CLI's exit code says). */
  kind?: ErrorKind;
  message: string;
  /** What to do about it. */
  fix: string;
}

/** Where a setting came from. */
export interface DoctorOrigin {
  /** `explicit` (an option), `env` (an environment variable), `profile` (a profile file), `default`. */
  kind: 'explicit' | 'env' | 'profile' | 'default';
  /** The option or environment variable name. */
  name?: string;
  /** The profile file. */
  path?: string;
  /** Human form, e.g. `environment variable ANTHROPIC_ORGANIZATION_ID`. */
  display: string;
}

/** An error as a report shows it. */
export interface DoctorError {
  kind: ErrorKind;
  message: string;
  status?: number;
  request_id?: string;
  error_code?: string;
}

/** Which step of the configuration chain decided, and where every field came from. */
export interface DoctorConfig {
  ok: boolean;
  /** `explicit_profile`, `explicit`, `api_key`, `auth_token`, `env_profile`, `env_federation`, `active_profile`. */
  step?: string;
  description?: string;
  resolution?: 'federation' | 'api_key' | 'static_bearer' | 'user_oauth';
  config_dir?: string;
  profile?: string;
  profile_path?: string;
  fields: DoctorField[];
  /** Federation settings present but ignored because a static credential wins. */
  shadowed?: string;
  error?: DoctorError;
}

/** A configuration setting and where it came from. */
export interface DoctorField {
  name: string;
  value: string;
  origin: DoctorOrigin;
}

/** An id and whether it is well-formed. */
export interface DoctorIdCheck {
  field: string;
  value: string;
  origin: DoctorOrigin;
  ok: boolean;
  error?: string;
}

/** The identity token decoded **without verification**: never the token or its signature. */
export interface DoctorJwt {
  alg: string | null;
  kid: string | null;
  typ: string | null;
  iss: string | null;
  sub: string | null;
  aud: string[];
  iat: number | null;
  nbf: number | null;
  exp: number | null;
  /** `exp - iat`, seconds. */
  lifetime_s: number | null;
  /** `exp - now`, seconds (negative when expired). */
  remaining_s: number | null;
  jti_present: boolean;
  /** The claim names present. */
  claim_names: string[];
}

/** The identity-token source and what it gave. */
export interface DoctorIdentity {
  /** The source's `source` tag. */
  source: IdentitySourceName | (string & {});
  description: string;
  /** The source's settings (literal `url` header values withheld). */
  settings: Record<string, unknown>;
  origin: DoctorOrigin;
  expected_audience: string;
  fetched: boolean;
  error?: DoctorError;
  size_bytes?: number;
  token?: DoctorJwt;
  decode_error?: string;
  /** What this machine's record of presented identity tokens says of this token. */
  record?: DoctorRecord;
}

/** The record of presented identity tokens (never the token, only its hashed `jti` and issuer). */
export interface DoctorRecord {
  /** The record file. */
  path: string;
  /** `new`, `consumed`, `in_flight`, `presented` (sent before, without a verdict) or `unusable`. */
  state: 'new' | 'consumed' | 'in_flight' | 'presented' | 'unusable' | (string & {});
  /** Unix seconds of the last presentation. */
  at?: number;
  /** The token cache of the configuration that presented it. */
  by?: string;
  detail?: string;
}

/** The on-disk token cache file. */
export interface DoctorCache {
  path?: string;
  state: 'disabled' | 'missing' | 'valid' | 'expired' | 'insecure' | 'corrupt';
  expires_at?: number;
  remaining_s?: number;
  detail?: string;
}

/** The optional real exchange (`doctorOptions.exchange`). */
export interface DoctorExchange {
  requested: boolean;
  performed: boolean;
  skipped_reason?: string;
  ok?: boolean;
  status?: number;
  request_id?: string;
  granted_lifetime_s?: number;
  expires_at?: number;
  scope?: string;
  /** The access token masked to its last four characters, e.g. `sk-ant-oat01-…abcd`. */
  token_masked?: string;
  /** The cache file the new token was written to. */
  cached_in?: string;
  error?: DoctorError;
}

/** The report of `doctor()`: the JSON of `anthropic-wif doctor --json`. */
export interface DoctorReport {
  /** Version of this shape (1). */
  version: number;
  /** No finding of severity `error`. */
  healthy: boolean;
  /** 0 when healthy, else the CLI exit code of the first error's kind. */
  exit_code: number;
  errors: number;
  warnings: number;
  /** Unix seconds. */
  checked_at: number;
  config: DoctorConfig;
  ids: DoctorIdCheck[];
  identity?: DoctorIdentity;
  cache?: DoctorCache;
  exchange: DoctorExchange;
  findings: DoctorFinding[];
}

/**
 * Diagnose a configuration, off the event loop: the report of
 * `anthropic-wif doctor --json`. `options` are `new Provider(options)`'s.
 * Resolves whatever it finds (check `report.healthy` and `report.findings`).
 * @throws {ConfigurationError} (as a rejection) on malformed arguments.
 */
export declare function doctor(options?: ProviderOptions, doctorOptions?: DoctorOptions): Promise<DoctorReport>;
