/**
 * `ocivirt logs` on a fabricated state directory: log files written here in the shim's format
 * (shim/README.md), the real CLI run as a process. Covers --tail, --since, -f across a rotation,
 * name resolution, and a hostile log directory (the container can write it).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'ocivirt-logs-cli-'));
const env = { ...process.env, OCIVIRT_DEBUG: '', OCIVIRT_CONFIG: '', OCIVIRT_LOG_FILE_BYTES: '' };
let n = 0;

/** A state dir with `domain`'s log directory; returns [stateDir, logDir]. */
function state(domain = 'web'): [string, string] {
  const s = join(scratch, String(n++));
  const log = join(s, 'containers', domain, 'run', 'log');
  mkdirSync(log, { recursive: true });
  return [s, log];
}
const stamp = (ms: number, ns = 0) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, (_, f: string) => `.${f}${String(ns).padStart(6, '0')}Z`);
const rec = (ms: number, stream: string, tag: string, text: string) => `${stamp(ms)} ${stream} ${tag} ${text}\n`;
const T0 = Date.parse('2026-11-30T00:00:00Z');
const run = (stateDir: string, ...args: string[]) =>
  spawnSync(bin, ['logs', ...args, '--state', stateDir], { encoding: 'utf8', env, timeout: 60_000 });

test('previous then current, stdout to stdout and stderr to stderr, P records joined to their line', () => {
  const [s, log] = state();
  writeFileSync(join(log, 'previous'), rec(T0, 'stdout', 'F', 'one') + rec(T0 + 1, 'stderr', 'F', 'warn'));
  writeFileSync(join(log, 'current'), rec(T0 + 2, 'stdout', 'P', 'tw') + rec(T0 + 2, 'stderr', 'F', 'e2') + rec(T0 + 3, 'stdout', 'F', 'o') +
    rec(T0 + 4, 'stdout', 'P', 'no newline'));
  const r = run(s, 'web');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, 'one\ntwo\nno newline');
  assert.is(r.stderr, 'warn\ne2\n');
});

test('--tail N: the last N lines; --timestamps: each with its time; bytes printed as they are', () => {
  const [s, log] = state();
  let text = '';
  for (let i = 1; i <= 1000; i++) text += rec(T0 + i * 1000, 'stdout', 'F', `line ${i}`);
  writeFileSync(join(log, 'current'), text + rec(T0 + 2_000_000, 'stdout', 'F', '\x1b[31mred\x1b[0m\ttab'));
  assert.is(run(s, 'web', '--tail', '3').stdout, 'line 999\nline 1000\n\x1b[31mred\x1b[0m\ttab\n');
  assert.is(run(s, 'web', '--tail', '0').stdout, '');
  assert.is(run(s, 'web', '--tail', '1', '-t').stdout, `${stamp(T0 + 2_000_000)} \x1b[31mred\x1b[0m\ttab\n`);
});

test('--since: an RFC 3339 time (nanoseconds compared) or a duration back from now', () => {
  const [s, log] = state();
  const now = Date.now();
  writeFileSync(join(log, 'previous'), rec(T0, 'stdout', 'F', 'old'));
  writeFileSync(join(log, 'current'), `${stamp(T0 + 5000, 1)} stdout F at+1ns\n` + rec(now - 30_000, 'stdout', 'F', 'recent'));
  assert.is(run(s, 'web', '--since', '2026-11-30T00:00:05.000000001Z').stdout, 'at+1ns\nrecent\n');
  assert.is(run(s, 'web', '--since', '2026-11-30T00:00:05.000000002Z').stdout, 'recent\n');
  assert.is(run(s, 'web', '--since', '10m').stdout, 'recent\n');
  assert.is(run(s, 'web', '--since', '10s').stdout, '');
  assert.is(run(s, 'web', '--since', '10m', '--tail', '5').stdout, 'recent\n');
  for (const bad of ['yesterday', '10x', '']) {
    const r = run(s, 'web', '--since', bad);
    assert.is(r.status, 2, bad);
  }
  assert.is(run(s, 'web', '--tail', '-1').status, 2);
});

test("the shim's notices go to stderr with their time; lines that are not records are skipped and counted", () => {
  const [s, log] = state();
  writeFileSync(join(log, 'current'), rec(T0, 'stdout', 'F', 'a') + 'garbage\n' + `${stamp(T0)} stdin F x\n` +
    rec(T0 + 1, 'ocivirt', 'F', 'ocivirt-init: 10 bytes (1 records) of output dropped') + rec(T0 + 2, 'stdout', 'F', 'b'));
  const r = run(s, 'web');
  assert.is(r.status, 0);
  assert.is(r.stdout, 'a\nb\n');
  assert.match(r.stderr, new RegExp(`^${stamp(T0 + 1).replace(/\./g, '\\.')} ocivirt-init: 10 bytes`, 'm'));
  assert.match(r.stderr, /2 lines that are not log records skipped/);
});

test('NAME: the entry in the status file, the domain an entry of that name gets (prefix), or the domain itself; unknown: exit 2', () => {
  const [s, log] = state('ct-my-app');
  writeFileSync(join(log, 'current'), rec(T0, 'stdout', 'F', 'hi'));
  assert.is(run(s, 'ct-my-app').stdout, 'hi\n');
  writeFileSync(join(s, 'cfg.json'), JSON.stringify({ namePrefix: 'ct-' }), { mode: 0o600 });
  assert.is(spawnSync(bin, ['logs', 'My_App', '--config', join(s, 'cfg.json'), '--state', s], { encoding: 'utf8', env }).stdout, 'hi\n');
  writeFileSync(join(s, 'status.json'), JSON.stringify({ updated: '', entries: [{ entry: 'bundle.tar', domain: 'ct-my-app' }] }));
  assert.is(run(s, 'bundle.tar').stdout, 'hi\n');
  for (const name of ['nothing', '../../etc', 'a/b']) {
    const r = run(s, name);
    assert.is(r.status, 2, name);
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('hostile log directory: a symlinked log dir, symlinked/FIFO files are not read; an oversized file is read only at its end', () => {
  const [s, log] = state();
  const secret = join(s, 'host-secret');
  writeFileSync(secret, rec(T0, 'stdout', 'F', 'host secret'));
  symlinkSync(secret, join(log, 'previous'));
  assert.is(spawnSync('mkfifo', [join(log, 'current')]).status, 0);
  const r = run(s, 'web');
  assert.is(r.status, 0, r.stderr); // a FIFO opened for reading would hang here
  assert.is(r.stdout, '');

  const [s2, log2] = state('other');
  const elsewhere = join(s2, 'elsewhere');
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, 'current'), rec(T0, 'stdout', 'F', 'host secret'));
  rmSync(log2, { recursive: true });
  symlinkSync(elsewhere, log2);
  const r2 = run(s2, 'other');
  assert.is(r2.status, 2);
  assert.match(r2.stderr, /is not a directory \(a symlink or file the container put there\)/);
  assert.not.match(r2.stdout, /secret/);

  // a file far past the cap (the container wrote it): only its last logFileBytes + 1 MiB are read
  const [s3, log3] = state();
  const line = rec(T0, 'stdout', 'F', 'x'.repeat(1000));
  writeFileSync(join(log3, 'current'), line.repeat(4000) + rec(T0 + 1, 'stdout', 'F', 'end'));
  const r3 = spawnSync(bin, ['logs', 'web', '--state', s3], { encoding: 'utf8', env: { ...env, OCIVIRT_LOG_FILE_BYTES: '65536' }, maxBuffer: 64 << 20 });
  assert.is(r3.status, 0);
  assert.match(r3.stderr, /only its last 1114112 are read/);
  const lines = r3.stdout.split('\n');
  assert.is(lines.at(-2), 'end');
  assert.ok(lines.length < 1200, `${lines.length} lines read`);
});

const waitFor = async (what: string, ok: () => boolean) => {
  const until = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('-f follows: new records, across a rotation (current -> previous), until the status file says the process ended', async () => {
  const [s, log] = state();
  const runDir = join(log, '..');
  writeFileSync(join(runDir, 'status'), 'running\n');
  writeFileSync(join(log, 'current'), rec(T0, 'stdout', 'F', 'before'));
  const child = spawn(bin, ['logs', 'web', '-f', '--tail', '1', '--state', s], { env });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  await waitFor('the existing line', () => out === 'before\n');
  appendFileSync(join(log, 'current'), rec(T0 + 1, 'stdout', 'F', 'one'));
  await waitFor('an appended line', () => out === 'before\none\n');
  // the shim rotates: the last records go to the old file just before the rename, then a new current
  appendFileSync(join(log, 'current'), rec(T0 + 2, 'stdout', 'P', 'tw'));
  renameSync(join(log, 'current'), join(log, 'previous'));
  writeFileSync(join(log, 'current'), rec(T0 + 3, 'stdout', 'F', 'o') + rec(T0 + 4, 'stdout', 'F', 'three'));
  await waitFor('the lines across the rotation', () => out === 'before\none\ntwo\nthree\n');
  appendFileSync(join(log, 'current'), rec(T0 + 5, 'stdout', 'F', 'last'));
  writeFileSync(join(runDir, 'status'), 'exited 0\n');
  assert.is(await exited, 0);
  assert.is(out, 'before\none\ntwo\nthree\nlast\n');
});

test('no log directory: exit 2 naming it', () => {
  const s = join(scratch, String(n++));
  mkdirSync(s);
  const r = run(s, 'web');
  assert.is(r.status, 2);
  assert.match(r.stderr, /no log for "web"/);
});

test.after(() => rmSync(scratch, { recursive: true, force: true }));
test.run();
