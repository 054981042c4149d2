// Conformance driver, Node face: `node drive.js OPTIONS_JSON` builds
// `new Provider(options)`, asks it for a token once, and prints one JSON line:
// {"ok": true, "expires_at": …, "token": …} or {"ok": false, "kind": …,
// "message": …}, plus "module": where anthropic-wif was loaded from (the runner
// checks it is the installed package). Run by tests/conformance/test_conformance.py,
// which copies it into the app directory so that `require` finds the install.
'use strict';

const module_ = require.resolve('anthropic-wif');
const { Provider, WifError } = require('anthropic-wif');

(async () => {
  const out = { module: module_ };
  try {
    const t = await new Provider(JSON.parse(process.argv[2])).getToken();
    Object.assign(out, { ok: true, token: t.token, expires_at: t.expiresAt });
  } catch (e) {
    if (!(e instanceof WifError)) throw e;
    Object.assign(out, { ok: false, kind: e.kind, message: e.message });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
})();
