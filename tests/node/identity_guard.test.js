// The Node face on issue 13 items 3 to 5: no identity token is sent twice or expired (design.md §1),
// and profiles in other SDKs' shapes load (docs/sdk-profiles.md §1). Against the emulator, which
// accepts each JWT once.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { Provider, IdentitySourceError, doctor } = require('anthropic-wif');
const { emulatorAndSandbox, federationOptions, RULE, ORG, SVAC } = require('./_helpers.js');

const fx = emulatorAndSandbox();
const sent = async () => (await fx.emu.requests()).map((r) => r.body.assertion);

function rotate(file, jwt) {
  fs.writeFileSync(`${file}.tmp`, `${jwt}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

let n = 0;
function profile(identityToken) {
  const name = `p${++n}`;
  const dir = fx.sb.path('config', 'configs');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    `${dir}/${name}.json`,
    JSON.stringify({
      version: '1.0',
      organization_id: ORG,
      base_url: fx.emu.baseURL,
      authentication: {
        type: 'oidc_federation',
        federation_rule_id: RULE,
        service_account_id: SVAC,
        identity_token: identityToken,
      },
    }),
    { mode: 0o600 },
  );
  return name;
}

test('a consumed token file is waited for until it rotates, never sent again', async () => {
  await fx.emu.reset();
  const file = fx.sb.path(`token-${++n}`);
  const [first, second] = [await fx.emu.mintJwt(), await fx.emu.mintJwt()];
  rotate(file, first);
  const provider = new Provider(
    federationOptions(fx.emu, fx.sb, { identityToken: { source: 'file', path: file }, credentialsPath: fx.sb.path(`c${n}.json`) }),
  );
  await provider.getToken();
  const timer = setTimeout(() => rotate(file, second), 1500);
  const started = Date.now();
  await provider.getToken({ forceRefresh: true });
  clearTimeout(timer);
  assert.ok(Date.now() - started >= 1200, 'it waited for the rotation');
  assert.deepEqual(await sent(), [first, second]);
  assert.equal((await fx.emu.stats()).denied, 0);
});

test('an expired token is not sent: IdentitySourceError, identity_token_expired', async () => {
  await fx.emu.reset();
  const file = fx.sb.path(`token-${++n}`);
  const expired = await fx.emu.mintJwt({ ttl: -120 });
  rotate(file, expired);
  const provider = new Provider(federationOptions(fx.emu, fx.sb, { identityToken: { source: 'file', path: file } }));
  await assert.rejects(provider.getToken(), (err) => {
    assert.ok(err instanceof IdentitySourceError, String(err));
    assert.equal(err.errorCode, 'identity_token_expired');
    assert.ok(err.message.includes(file) && err.message.includes('expired 12') && !err.message.includes(expired), err.message);
    return true;
  });
  assert.equal((await fx.emu.stats()).token_requests, 0);
});

test("profiles in other SDKs' shapes (PHP env_var, Java value) serve the Node face", async () => {
  await fx.emu.reset();
  const [phpEnv, javaValue] = [await fx.emu.mintJwt(), await fx.emu.mintJwt()];
  const env = { ...fx.sb.env, PHP_JWT: phpEnv };
  for (const [shape, jwt] of [
    [{ source: 'env', env_var: 'PHP_JWT' }, phpEnv],
    [{ source: 'value', path: javaValue }, javaValue],
  ]) {
    const name = profile(shape);
    const provider = new Provider({ profile: name, env });
    assert.match((await provider.getToken()).token, /^sk-ant-oat01-/);
    assert.equal((await sent()).at(-1), jwt);
    const report = await doctor({ profile: name, env });
    assert.ok(!JSON.stringify(report).includes(jwt), 'doctor never shows the JWT');
    assert.equal(report.identity.fetched, true);
  }
});
