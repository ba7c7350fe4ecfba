#!/usr/bin/env node
// Runs every compiled uvu test file (dist/test/**/*.test.js) and libvirt-binding's node:test files, each in its own node process, and
// prints one closing line "N passed, N failed, N skipped". Exit 1 if any test or file failed.
//   --unit      skip test/integration and libvirt-binding/test (no libvirtd needed)
//   --only STR  only files whose path contains STR
//   -j N        files run at once (default 2; integration files always run one at a time)
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const jobs = args.includes('-j') ? Number(args[args.indexOf('-j') + 1]) : 2;

// The container init shim (C, static) that test/shim runs: built here so that every way into the
// suite (npm test, npm run test:unit, this script directly) tests the current source. make is a no-op
// when the binary is newer than shim/ocivirt-init.c; a failed build leaves test/shim to fail loudly.
{
  const made = spawnSync('make', ['-s', '-C', join(root, 'shim')], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (made.status !== 0) console.error(`run-tests: building the shim failed (make -C shim: ${made.error?.message ?? `exit ${made.status}`})`);
}

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
// libvirt-binding's own tests (node:test, on the real libvirtd) run with the integration files
const bindingTests = readdirSync(join(root, 'libvirt-binding/test'))
  .filter((n) => n.endsWith('.test.mjs'))
  .map((n) => join(root, 'libvirt-binding/test', n));
const isIntegration = (f) => f.includes('/integration/') || f.includes('/libvirt-binding/');
const files = [...walk(join(root, 'dist/test')), ...bindingTests]
  .filter((f) => !unitOnly || !isIntegration(f))
  .filter((f) => !only || f.includes(only));
if (files.length === 0) {
  console.error('run-tests: no test files found (did tsc run?)');
  process.exit(1);
}

let passed = 0, failed = 0, skipped = 0;
const brokenFiles = [];

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--enable-source-maps', file], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '0' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => {
      // uvu's summary ("Total: N"), or node:test's ("# tests N")
      const num = (label) => Number((out.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? 0);
      const tap = (label) => Number((out.match(new RegExp(`^# ${label} (\\d+)$`, 'm')) ?? [])[1] ?? 0);
      const nodeTest = /^# tests \d+$/m.test(out);
      const total = nodeTest ? tap('tests') : num('Total');
      const ok = nodeTest ? tap('pass') : num('Passed');
      const skip = nodeTest ? tap('skipped') + tap('todo') : num('Skipped');
      const bad = total - ok - skip;
      passed += ok; skipped += skip; failed += bad;
      const name = file.startsWith(join(root, 'dist')) ? relative(join(root, 'dist'), file) : relative(root, file);
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (code !== 0 || bad > 0 || total === 0) {
        if (bad === 0) { failed += 1; }
        brokenFiles.push(name);
        console.log(`FAIL ${name} (${ok}/${total}, exit ${code}, ${secs}s)\n${out}`);
      } else {
        console.log(`ok   ${name} (${ok} passed${skip ? `, ${skip} skipped` : ''}, ${secs}s)`);
      }
      resolve();
    });
  });
}

const unit = files.filter((f) => !isIntegration(f));
const integration = files.filter(isIntegration);
async function pool(list, n) {
  const queue = [...list];
  await Promise.all(Array.from({ length: Math.min(n, queue.length) }, async () => {
    while (queue.length) await runFile(queue.shift());
  }));
}
await pool(unit, jobs);
await pool(integration, 1);
if (brokenFiles.length) console.log(`\nfailing files:\n  ${brokenFiles.join('\n  ')}`);
console.log(`\n${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 ? 1 : 0);
