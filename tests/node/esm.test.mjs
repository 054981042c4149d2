// The ESM entry point: named and default imports, the same classes as CommonJS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import wifDefault, { Provider, WifError, ConfigurationError, ERROR_KINDS, VERSION } from 'anthropic-wif';

const require = createRequire(import.meta.url);

test('import { Provider } from "anthropic-wif" gives the CommonJS classes', () => {
  const cjs = require('anthropic-wif');
  assert.equal(Provider, cjs.Provider);
  assert.equal(WifError, cjs.WifError);
  assert.equal(wifDefault, cjs);
  assert.deepEqual([...ERROR_KINDS], [...cjs.ERROR_KINDS]);
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
});

test('errors thrown through the ESM entry are instances of the exported classes', () => {
  assert.throws(() => new Provider({ federationRuleID: 'fdrl_x' }), (e) => e instanceof ConfigurationError && /federationRuleID/.test(e.message));
});
