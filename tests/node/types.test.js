// index.d.ts / index.d.mts: they compile under --strict against real usage
// (including `new Anthropic({ credentials })` from the official SDK's own
// types), and they declare exactly what the entry points export at run time.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const ts = require('typescript');

const { PKG } = require('./_helpers.js');

// The entry points and their declarations, as the package under test's own package.json names them.
const { exports: EXPORTS } = require(path.join(PKG, 'package.json'));
const CJS_TYPES = path.join(PKG, EXPORTS['.'].require.types);
const ESM_ENTRY = path.join(PKG, EXPORTS['.'].import.default);
const ESM_TYPES = path.join(PKG, EXPORTS['.'].import.types);

test('tsc --strict accepts the typed usage (CommonJS and ESM) and rejects the misuses', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  let out = '';
  try {
    out = execFileSync(process.execPath, [tsc, '-p', path.join(__dirname, 'types', 'tsconfig.json')], { encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc reported errors:\n${e.stdout}${e.stderr}`);
  }
  assert.equal(out.trim(), '');
});

function declaredExports(file) {
  const program = ts.createProgram([file], { strict: true, module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16, noEmit: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const symbol = checker.getSymbolAtLocation(source);
  const values = new Set();
  const classes = {};
  for (const exp of checker.getExportsOfModule(symbol)) {
    const target = exp.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exp) : exp;
    if (target.flags & ts.SymbolFlags.Value) values.add(exp.name);
    if (target.flags & ts.SymbolFlags.Class) {
      const type = checker.getDeclaredTypeOfSymbol(target);
      classes[exp.name] = type.getProperties().map((p) => p.name).sort();
    }
  }
  return { values, classes };
}

test('index.d.ts declares every runtime export of index.js, and nothing more', () => {
  const runtime = require(PKG);
  const { values, classes } = declaredExports(CJS_TYPES);
  assert.deepEqual([...values].sort(), Object.keys(runtime).sort());
  // Every public method of Provider is declared.
  const methods = Object.getOwnPropertyNames(runtime.Provider.prototype).filter((n) => n !== 'constructor' && !n.startsWith('_') && n !== 'toJSON');
  for (const m of methods) assert.ok(classes.Provider.includes(m), `Provider.${m} is declared`);
  // And every WifError instance field.
  const err = new runtime.WifError('x', { kind: 'denied', status: 401, requestId: 'req_1' });
  for (const f of Object.keys(err)) assert.ok(classes.WifError.includes(f), `WifError.${f} is declared`);
});

test('index.d.mts declares every runtime export of index.mjs', async () => {
  const esm = await import(ESM_ENTRY);
  const { values } = declaredExports(ESM_TYPES);
  assert.deepEqual([...values].sort(), Object.keys(esm).sort());
});

// ---- the declarations against the engine's own description (core/src/schema.rs) ----------------

// The loader sits next to the entry point (bindings-node/ in a checkout, the package root when packed).
const { loadAddon } = require(path.join(path.dirname(require.resolve('anthropic-wif')), 'loader.js'));
const SCHEMA = JSON.parse(loadAddon().schema());

/** Every interface of index.d.ts: name → { member: { optional, type } }. */
function interfaces(file) {
  const source = ts.createSourceFile(file, require('node:fs').readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out = {};
  for (const st of source.statements) {
    if (!ts.isInterfaceDeclaration(st)) continue;
    const members = {};
    for (const m of st.members) {
      if (!ts.isPropertySignature(m)) continue;
      members[m.name.getText(source)] = { optional: !!m.questionToken, type: m.type ? m.type.getText(source) : '' };
    }
    out[st.name.text] = members;
  }
  return out;
}

const DECLARED = interfaces(CJS_TYPES);

test('ProviderOptions and DoctorOptions declare exactly the engine table, in camelCase', () => {
  const names = (scope) => SCHEMA.options.filter((o) => o.scope === scope).map((o) => o.camel);
  assert.deepEqual(Object.keys(DECLARED.ProviderOptions), names('provider'));
  assert.deepEqual(Object.keys(DECLARED.DoctorOptions), names('doctor'));
  for (const [name, m] of Object.entries({ ...DECLARED.ProviderOptions, ...DECLARED.DoctorOptions })) {
    assert.ok(m.optional, `${name} is optional`);
  }
});

test('IdentityTokenSource declares every source the engine knows, with its fields', () => {
  const declared = {};
  for (const [name, members] of Object.entries(DECLARED)) {
    if (!name.endsWith('IdentitySource') || !members.source) continue;
    const tag = JSON.parse(members.source.type.replace(/'/g, '"'));
    const { source, ...fields } = members;
    declared[tag] = { name, fields };
  }
  assert.deepEqual(Object.keys(declared).sort(), Object.keys(SCHEMA.identity_sources).sort());
  for (const [tag, fields] of Object.entries(SCHEMA.identity_sources)) {
    const d = declared[tag];
    assert.deepEqual(Object.keys(d.fields).sort(), Object.keys(fields).sort(), `${d.name}`);
    for (const [field, { required }] of Object.entries(fields)) {
      assert.equal(!d.fields[field].optional, required, `${d.name}.${field} required`);
    }
  }
});

test('the Doctor* interfaces declare every key of the report, optional and nullable as doctor writes them', () => {
  for (const [typeName, keys] of Object.entries(SCHEMA.doctor_report)) {
    const d = DECLARED[typeName];
    assert.ok(d, `index.d.ts declares ${typeName}`);
    assert.deepEqual(Object.keys(d).sort(), Object.keys(keys).sort(), typeName);
    for (const [key, { required, nullable }] of Object.entries(keys)) {
      assert.equal(!d[key].optional, required, `${typeName}.${key} required`);
      assert.equal(/\bnull\b/.test(d[key].type), nullable, `${typeName}.${key} nullable (${d[key].type})`);
    }
  }
});
