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
