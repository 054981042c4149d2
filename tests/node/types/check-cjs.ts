// Compiled by tests/node/types.test.js with `tsc --noEmit --strict`: the
// declarations must describe the API as a CommonJS consumer uses it, and
// `provider.credentials()` must be what `new Anthropic({ credentials })` accepts.
import Anthropic from '@anthropic-ai/sdk';
import wif = require('anthropic-wif');
import {
  Provider,
  doctor,
  WifError,
  ConfigurationError,
  IdentitySourceError,
  ExchangeDeniedError,
  EndpointUnavailableError,
  ERROR_KINDS,
  VERSION,
  type AccessToken,
  type ProviderOptions,
  type CredentialsFunction,
  type ErrorKind,
  type IdentityTokenSource,
  type GetTokenOptions,
  type IdentitySourceName,
  type DoctorReport,
  type DoctorFinding,
  type DoctorOptions,
} from 'anthropic-wif';

const sources: IdentityTokenSource[] = [
  { source: 'file', path: '/var/run/secrets/anthropic.com/token' },
  { source: 'env', var: 'MY_JWT' },
  { source: 'command', command: ['gcloud', 'auth', 'print-identity-token'], timeout_s: 10 },
  { source: 'url', url: 'http://169.254.169.254/x', headers: { Metadata: 'true' }, field: 'access_token' },
  { source: 'github_actions', audience: 'https://api.anthropic.com' },
  { source: 'github_actions' },
  { source: 'gitlab' },
  { source: 'gitlab', var: 'ANTHROPIC_ID_TOKEN' },
  { source: 'circleci', var: 'CIRCLE_OIDC_TOKEN_V2' },
  { source: 'bitbucket' },
  { source: 'terraform', var: 'TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC' },
  { source: 'gcp_metadata', audience: 'https://api.anthropic.com' },
  { source: 'azure_imds', audience: 'api://anthropic', client_id: '00000000-0000-0000-0000-000000000000' },
  { source: 'kubernetes', path: '/var/run/secrets/anthropic.com/token' },
  { source: 'aws_sts', region: 'us-east-1', audience: 'https://api.anthropic.com', duration_seconds: 300, signing_algorithm: 'ES384' },
  { source: 'spiffe', socket: 'unix:///run/spire/sockets/agent.sock', spiffe_id: 'spiffe://example.org/app' },
  { source: 'spiffe', path: '/run/spiffe/jwt_svid.token', audience: 'https://api.anthropic.com' },
  { source: 'auto' },
  { source: 'auto', audience: 'https://api.anthropic.com' },
];
const names: IdentitySourceName[] = sources.map((s) => s.source);

async function diagnose(): Promise<boolean> {
  const dopts: DoctorOptions = { exchange: true, expectedAudience: 'https://api.anthropic.com' };
  const report: DoctorReport = await doctor(options, dopts);
  const none: DoctorReport = await doctor();
  const findings: DoctorFinding[] = report.findings;
  const codes: string[] = findings.filter((f) => f.severity === 'error').map((f) => `${f.code}: ${f.message} (${f.fix})`);
  const exp: number | null | undefined = report.identity?.token?.exp;
  const masked: string | undefined = report.exchange.token_masked;
  const requestId: string | undefined = report.exchange.request_id;
  const cacheState: string | undefined = report.cache?.state;
  const code: number = report.exit_code;
  void [none, codes, exp, masked, requestId, cacheState, code, report.version, report.errors, report.warnings, report.config.ok];
  return report.healthy;
}

const options: ProviderOptions = {
  profile: 'ci',
  federationRuleId: 'fdrl_x',
  organizationId: '00000000-0000-4000-8000-000000000001',
  serviceAccountId: 'svac_x',
  workspaceId: 'default',
  baseURL: 'https://api.anthropic.com',
  identityToken: sources[0],
  configDir: '/etc/anthropic',
  credentialsPath: '/tmp/token.json',
  noCache: false,
  minRemaining: 60,
  env: { ...process.env },
};

async function main(): Promise<void> {
  const provider = new Provider(options);
  const none = new Provider();
  const credentials: CredentialsFunction = provider.credentials();
  const client = new Anthropic({ credentials });
  const client2 = new Anthropic({ credentials: none.credentials() });
  const t: AccessToken = await provider.getToken();
  const forced: AccessToken = await provider.getToken({ forceRefresh: true } satisfies GetTokenOptions);
  const token: string = t.token;
  const exp: number | null = forced.expiresAt;
  const other: Provider = provider.forBaseURL('https://example.invalid');
  other.invalidate();
  try {
    await provider.getToken();
  } catch (e) {
    if (e instanceof WifError) {
      const kind: ErrorKind = e.kind;
      const status: number | null = e.status;
      const requestId: string | null = e.requestId;
      const code: string = e.code;
      const errorCode: string | null = e.errorCode;
      void [kind, status, requestId, code, errorCode];
    }
    if (e instanceof ExchangeDeniedError) {
      const k: 'denied' = e.kind;
      void k;
    }
    const classes = [ConfigurationError, IdentitySourceError, ExchangeDeniedError, EndpointUnavailableError];
    void classes;
  }
  const kinds: readonly ErrorKind[] = ERROR_KINDS;
  const v: string = VERSION;
  const same: typeof Provider = wif.Provider;
  void [client, client2, token, exp, kinds, v, same];
}

// @ts-expect-error unknown option names are a type error
new Provider({ baseUrl: 'https://x' });
// @ts-expect-error identityToken takes the union, not a JWT string
new Provider({ identityToken: 'eyJ...' });
// @ts-expect-error the CI-variable presets take no audience (the platform sets it)
new Provider({ identityToken: { source: 'gitlab', audience: 'x' } });
// @ts-expect-error presets are snake_case, as in the profile file
new Provider({ identityToken: { source: 'gcp-metadata' } });
// @ts-expect-error doctor options are not provider options
doctor({}, { baseURL: 'https://x' });
// @ts-expect-error expiresAt is a number or null, never a string
const bad: string = ({} as AccessToken).expiresAt;

void main;
void diagnose;
void names;
void bad;
