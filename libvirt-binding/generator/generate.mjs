#!/usr/bin/env node
// Generates the addon's C source, its JavaScript entry point, the TypeScript declarations and the
// coverage report from libvirt's own API description (libvirt-api.xml, shipped by libvirt-dev).
// Runs at build time (npm ci / npm install): nothing here is edited by hand for a new libvirt API.
//
//   node generator/generate.mjs [path/to/libvirt-api.xml] [outdir]
//
// The input defaults to the installed description (`pkg-config --variable=libvirt_api libvirt`,
// else /usr/share/libvirt/api/libvirt-api.xml). Output goes to ./generated.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseApi } from './api-xml.mjs';
import { HANDLES, OVERRIDES, classify } from './mapping.mjs';
import { emitC } from './emit-c.mjs';
import { emitJs, emitDts } from './emit-js.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = resolve(here, '..');

function installedApiXml() {
  try {
    const p = execFileSync('pkg-config', ['--variable=libvirt_api', 'libvirt'], { encoding: 'utf8' }).trim();
    if (p && existsSync(p)) return p;
  } catch {
    // no pkg-config variable: fall back to Debian's path
  }
  return '/usr/share/libvirt/api/libvirt-api.xml';
}

const input = process.argv[2] ?? installedApiXml();
const outDir = resolve(process.argv[3] ?? join(pkgDir, 'generated'));
if (!existsSync(input)) {
  console.error(`libvirt-binding: ${input} not found: install libvirt-dev (Debian: apt-get install libvirt-dev)`);
  process.exit(1);
}

const api = parseApi(readFileSync(input, 'utf8'));
const generated = [];
const skipped = [];
const overridden = [];
for (const fn of api.functions) {
  if (!/^vir(Connect|Domain|Network)/.test(fn.name)) {
    skipped.push({ name: fn.name, reason: 'outside the covered families (virConnect*, virDomain*, virNetwork*)' });
    continue;
  }
  if (OVERRIDES[fn.name]) {
    overridden.push({ name: fn.name, how: OVERRIDES[fn.name] });
    continue;
  }
  const plan = classify(fn, api);
  if ('skip' in plan) skipped.push({ name: fn.name, reason: plan.skip });
  else generated.push(plan);
}

mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'functions.c'), emitC(generated, api));
writeFileSync(join(outDir, 'index.js'), emitJs(generated, overridden, api));
writeFileSync(join(outDir, 'index.d.ts'), emitDts(generated, overridden, api));

const inFamilies = api.functions.filter((f) => /^vir(Connect|Domain|Network)/.test(f.name)).length;
const coverage = {
  input,
  libvirtFunctions: api.functions.length,
  inFamilies,
  generated: generated.length,
  overridden: overridden.length,
  skippedInFamilies: skipped.filter((s) => !s.reason.startsWith('outside')).length,
  outsideFamilies: skipped.filter((s) => s.reason.startsWith('outside')).length,
  constants: api.enums.size,
  handles: HANDLES.map((h) => h.type),
  functions: {
    generated: generated.map((g) => g.name),
    overridden,
    skipped: skipped.filter((s) => !s.reason.startsWith('outside')),
  },
};
writeFileSync(join(outDir, 'coverage.json'), JSON.stringify(coverage, null, 2) + '\n');
const md = [
  `# libvirt-binding coverage (generated from ${input})`,
  '',
  `libvirt-api.xml describes ${api.functions.length} functions; ${inFamilies} are in the covered families`,
  `(virConnect*, virDomain*, virNetwork*): ${generated.length} generated, ${overridden.length} hand-written overrides,`,
  `${coverage.skippedInFamilies} skipped. ${api.enums.size} constants exported.`,
  '',
  '## Hand-written overrides',
  '',
  ...overridden.map((o) => `- \`${o.name}\`: ${o.how}`),
  '',
  '## Skipped (with the reason)',
  '',
  ...coverage.functions.skipped.map((s) => `- \`${s.name}\`: ${s.reason}`),
  '',
];
writeFileSync(join(outDir, 'COVERAGE.md'), md.join('\n'));
console.log(
  `libvirt-binding: ${input}: ${inFamilies} functions in scope: ${generated.length} generated, ${overridden.length} overrides, ${coverage.skippedInFamilies} skipped (see generated/COVERAGE.md)`,
);
