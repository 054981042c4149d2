// ESM entry point: the same classes as the CommonJS entry (no dual-package hazard).
import cjs from './index.js';

export const {
  Provider,
  doctor,
  WifError,
  ConfigurationError,
  IdentitySourceError,
  ExchangeDeniedError,
  EndpointUnavailableError,
  ERROR_KINDS,
  VERSION,
} = cjs;

export default cjs;
