// Type declarations for the ESM entry `index.mjs`: the same API as index.d.ts.
import * as cjs from './index.js';

export {
  Provider,
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
} from './index.js';

declare const _default: typeof cjs;
export default _default;
