// Type declarations for the ESM entry `index.mjs`: the same API as index.d.ts.
import * as cjs from './index.js';

export {
  Provider,
  doctor,
  WifError,
  ConfigurationError,
  IdentitySourceError,
  ExchangeDeniedError,
  EndpointUnavailableError,
  ERROR_KINDS,
  VERSION,
} from './index.js';
export type {
  IdentityTokenSource,
  ProviderOptions,
  AccessToken,
  GetTokenOptions,
  CredentialsFunction,
  ErrorKind,
  IdentitySourceName,
  FileIdentitySource,
  EnvIdentitySource,
  CommandIdentitySource,
  UrlIdentitySource,
  GithubActionsIdentitySource,
  GitlabIdentitySource,
  CircleciIdentitySource,
  BitbucketIdentitySource,
  TerraformIdentitySource,
  GcpMetadataIdentitySource,
  AzureImdsIdentitySource,
  KubernetesIdentitySource,
  AwsStsIdentitySource,
  SpiffeIdentitySource,
  AutoIdentitySource,
  DoctorOptions,
  DoctorSeverity,
  DoctorFinding,
  DoctorOrigin,
  DoctorError,
  DoctorConfig,
  DoctorField,
  DoctorIdCheck,
  DoctorJwt,
  DoctorIdentity,
  DoctorCache,
  DoctorExchange,
  DoctorReport,
} from './index.js';

declare const _default: typeof cjs;
export default _default;
