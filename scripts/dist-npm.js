#!/usr/bin/env node
// Packs the npm packages of one platform (called by scripts/dist.sh):
//
//   anthropic-wif-<version>.tgz            the main package: the JS/TS surface and loader.js, no
//                                          Rust sources and no install script; one optionalDependency
//                                          per platform of scripts/platforms.json
//   anthropic-wif-<tag>-<version>.tgz      the platform package: os/cpu/libc fields and only the .node
//
//   node scripts/dist-npm.js --platform TAG --addon PATH --stage DIR --out DIR
//
// Names come from bindings-node/loader.js (the loader looks for exactly these), versions and
// metadata from the root package.json. Every tarball's file list is checked after packing.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const loader = require('../bindings-node/loader.js');

const ROOT = path.resolve(__dirname, '..');
const LICENSES = ['LICENSE-MIT', 'LICENSE-APACHE'];
/** The main package's own files, from bindings-node/ (package.json and README.md come on top). */
const MAIN_FILES = ['index.js', 'index.mjs', 'index.d.ts', 'index.d.mts', 'loader.js'];

function fail(msg) {
  process.stderr.write(`dist-npm: ${msg}\n`);
  process.exit(1);
}

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    if (!['--platform', '--addon', '--stage', '--out'].includes(k) || argv[i + 1] === undefined) {
      fail(`usage: node scripts/dist-npm.js --platform TAG --addon PATH --stage DIR --out DIR (got ${k})`);
    }
    out[k.slice(2)] = argv[i + 1];
  }
  for (const k of ['platform', 'addon', 'stage', 'out']) if (!out[k]) fail(`--${k} is required`);
  return out;
}

/** Rewrites every "./bindings-node/x" in the checkout's exports map to "./x" (the flat package). */
function flatten(value) {
  if (typeof value === 'string') return value.replace(/^\.\/bindings-node\//, './');
  if (Array.isArray(value)) return value.map(flatten);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, flatten(v)]));
  return value;
}

function write(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

/** `npm pack` in `dir`; returns the tarball path and its file list (package-relative). */
function pack(dir, out) {
  const json = execFileSync('npm', ['pack', '--json', '--pack-destination', out], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    shell: process.platform === 'win32', // npm is npm.cmd there
  });
  const [info] = JSON.parse(json);
  return { tarball: path.join(out, info.filename), files: info.files.map((f) => f.path).sort(), size: info.size };
}

function expectFiles(what, got, want) {
  const w = [...want].sort();
  if (JSON.stringify(got) !== JSON.stringify(w)) {
    fail(`${what} holds ${JSON.stringify(got)}, expected exactly ${JSON.stringify(w)}`);
  }
}

function main() {
  const a = args(process.argv.slice(2));
  const root = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const { platforms } = JSON.parse(fs.readFileSync(path.join(__dirname, 'platforms.json'), 'utf8'));
  const p = platforms.find((x) => x.tag === a.platform);
  if (!p) fail(`unknown platform ${a.platform}; scripts/platforms.json has ${platforms.map((x) => x.tag).join(', ')}`);
  if (!fs.existsSync(a.addon)) fail(`the addon ${a.addon} does not exist`);
  const version = root.version;
  fs.rmSync(a.stage, { recursive: true, force: true });
  fs.mkdirSync(a.out, { recursive: true });
  const common = { version, license: root.license, repository: root.repository };

  // The platform package: the .node file and nothing else (plus the licenses and a pointer README).
  const pname = loader.packageName(p.tag);
  const node = loader.binaryName(p.tag);
  const pdir = path.join(a.stage, p.tag);
  copy(a.addon, path.join(pdir, node));
  for (const l of LICENSES) copy(path.join(ROOT, l), path.join(pdir, l));
  write(
    path.join(pdir, 'README.md'),
    `# ${pname}\n\nThe ${p.tag} native addon of [anthropic-wif](https://www.npmjs.com/package/anthropic-wif). ` +
      'Install `anthropic-wif` instead: npm picks this package for you on this platform.\n',
  );
  const pjson = {
    name: pname,
    ...common,
    description: `The ${p.tag} native addon of anthropic-wif (install anthropic-wif, not this).`,
    os: [p.os],
    cpu: [p.cpu],
    ...(p.libc ? { libc: [p.libc] } : {}),
    main: node,
    files: [node, ...LICENSES],
    engines: root.engines,
  };
  write(path.join(pdir, 'package.json'), JSON.stringify(pjson, null, 2) + '\n');
  const platformPack = pack(pdir, a.out);
  expectFiles(pname, platformPack.files, [node, 'package.json', 'README.md', ...LICENSES]);

  // The main package: the JS/TS surface and the loader, wired to every platform package.
  const mdir = path.join(a.stage, 'main');
  for (const f of MAIN_FILES) copy(path.join(ROOT, 'bindings-node', f), path.join(mdir, f));
  copy(path.join(ROOT, 'bindings-node', 'README.md'), path.join(mdir, 'README.md'));
  for (const l of LICENSES) copy(path.join(ROOT, l), path.join(mdir, l));
  const exportsMap = flatten(root.exports);
  const mjson = {
    name: root.name,
    ...common,
    description: root.description,
    keywords: root.keywords,
    main: flatten(root.main),
    types: flatten(root.types),
    exports: exportsMap,
    files: [...MAIN_FILES, ...LICENSES],
    engines: root.engines,
    peerDependencies: root.peerDependencies,
    peerDependenciesMeta: root.peerDependenciesMeta,
    optionalDependencies: Object.fromEntries(platforms.map((x) => [loader.packageName(x.tag), version])),
  };
  for (const target of JSON.stringify([mjson.main, mjson.types, exportsMap]).match(/\.\/[^"]+/g)) {
    if (target !== './package.json' && !fs.existsSync(path.join(mdir, target))) fail(`package.json names ${target}, which is not in the package`);
  }
  write(path.join(mdir, 'package.json'), JSON.stringify(mjson, null, 2) + '\n');
  const mainPack = pack(mdir, a.out);
  expectFiles(root.name, mainPack.files, [...MAIN_FILES, 'package.json', 'README.md', ...LICENSES]);

  for (const t of [mainPack, platformPack]) {
    process.stdout.write(`${path.basename(t.tarball)}\t${t.files.length} files\t${t.size} bytes\n`);
  }
}

main();
