// ESM entry point: the same classes as the CommonJS entry (no dual-package hazard).
import cjs from './index.js';

export const {
  Provider,
  WifError,
  ConfigError,
  IdentityError,
  DeniedError,
  UnavailableError,
  InternalError,
  ERROR_KINDS,
  VERSION,
} = cjs;

export default cjs;
