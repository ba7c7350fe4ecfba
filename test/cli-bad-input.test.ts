/**
 * Bad input through the real CLI (bin/ocivirt): each case exits 2 with exactly one line on
 * stderr that names the file and the field (or the flag), and never a stack trace.
 */
import { test } from 'uvu';
import { rng } from './helpers/prng.js';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../../bin/ocivirt', import.meta.url));
const run = (args: string[], input?: string) =>
  spawnSync(bin, args, { encoding: 'utf8', input, env: { ...process.env, OCIVIRT_DEBUG: '' }, timeout: 60_000 });

let dir = '';
test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'ocivirt-bad-input-'));
});
test.after.each(() => {
  rmSync(dir, { recursive: true, force: true });
});

const validConfig = () => ({
  ociVersion: '1.2.0',
  root: { path: 'rootfs' },
  process: { cwd: '/', args: ['/bin/sh'], env: ['PATH=/bin'], user: { uid: 0, gid: 0 } },
  linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }] },
});

/** A bundle with `config.json` holding `text` and a rootfs where /bin/sh exists. */
function bundle(text: string, name = 'bundle'): string {
  const b = join(dir, name);
  mkdirSync(join(b, 'rootfs', 'bin'), { recursive: true });
  writeFileSync(join(b, 'rootfs', 'bin', 'sh'), '#!/bin/true\n');
  chmodSync(join(b, 'rootfs', 'bin', 'sh'), 0o755);
  writeFileSync(join(b, 'config.json'), text);
  return b;
}
const bundleOf = (config: unknown) => bundle(JSON.stringify(config, null, 2));

/** Exit 2, one line, no stack trace, and every `mentions` pattern in that line. */
function refused(r: ReturnType<typeof run>, ...mentions: (string | RegExp)[]) {
  const err = r.stderr ?? '';
  assert.is(r.status, 2, `exit ${r.status}, stderr: ${err}`);
  const lines = err.split('\n').filter((l) => l.trim() !== '');
  assert.is(lines.length, 1, `one line expected, got:\n${err}`);
  assert.not.match(err, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
  assert.not.match(err, /\b(TypeError|ReferenceError|SyntaxError|RangeError)\b/, 'no raw JS error');
  for (const m of mentions) {
    if (typeof m === 'string') assert.ok(err.includes(m), `stderr should mention ${JSON.stringify(m)}: ${err}`);
    else assert.match(err, m);
  }
  assert.is(r.stdout, '', 'nothing on stdout');
}

test('from-native is there, and takes a valid bundle (so the refusals below are about the input)', () => {
  const help = run(['from-native', '--help']);
  assert.is(help.status, 0, help.stderr);
  const b = bundleOf(validConfig());
  const ok = run(['from-native', '--name', 'good', b]);
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /<domain type='lxc'|<domain type="lxc"/);
});

test('not JSON', () => {
  const b = bundle('this is not json');
  refused(run(['from-native', b]), join(b, 'config.json'), /JSON/);
});

test('truncated JSON', () => {
  const text = JSON.stringify(validConfig(), null, 2);
  const b = bundle(text.slice(0, Math.floor(text.length / 2)));
  refused(run(['from-native', b]), join(b, 'config.json'), /JSON/);
});

test('empty file, and JSON that is not an object', () => {
  refused(run(['from-native', bundle('', 'empty')]), join(dir, 'empty', 'config.json'));
  refused(run(['from-native', bundle('[1,2]', 'array')]), join(dir, 'array', 'config.json'), '(root)');
});

test('config.json given directly is read the same way', () => {
  const b = bundle('{"ociVersion":');
  refused(run(['from-native', join(b, 'config.json')]), join(b, 'config.json'));
});

/** Each mutated config is refused by from-native, naming its config.json and the field. */
function expectFieldRefusals(cases: [(c: any) => void, string][]): void {
  for (const [mutate, field] of cases) {
    const c = validConfig();
    mutate(c);
    const b = bundleOf(c);
    refused(run(['from-native', b]), join(b, 'config.json'), field);
    rmSync(b, { recursive: true });
  }
}

test('wrong types name the field', () => {
  const cases: [(c: any) => void, string][] = [
    [(c) => (c.process.args = '/bin/sh'), 'process.args'],
    [(c) => (c.process.args = ['/bin/sh', 7]), 'process.args[1]'],
    [(c) => (c.process.user.uid = '0'), 'process.user.uid'],
    [(c) => (c.root = 'rootfs'), 'root'],
    [(c) => (c.linux.namespaces = { type: 'pid' }), 'linux.namespaces'],
    [(c) => (c.process.env = 'PATH=/bin'), 'process.env'],
    [(c) => (c.hostname = 42), 'hostname'],
  ];
  expectFieldRefusals(cases);
});

test('schema violations name the field', () => {
  const cases: [(c: any) => void, string][] = [
    [(c) => (c.process.user.uid = -1), 'process.user.uid'],
    [(c) => (c.process.user.gid = 2 ** 32), 'process.user.gid'],
    [(c) => (c.linux.namespaces[0].type = 'bogus'), 'linux.namespaces[0].type'],
    [(c) => delete c.ociVersion, 'ociVersion'],
    [(c) => delete c.process.cwd, 'process.cwd'],
    [(c) => (c.process.env = ['NOEQUALS']), 'process.env[0]'],
    [(c) => (c.mounts = [{ destination: 'relative', type: 'tmpfs', source: 'tmpfs' }]), 'mounts[0].destination'],
    [(c) => (c.linux.resources = { memory: { limit: 1.5 } }), 'linux.resources.memory.limit'],
    [(c) => (c.process.rlimits = [{ type: 'RLIMIT_NOPE', soft: 1, hard: 1 }]), 'process.rlimits[0].type'],
  ];
  expectFieldRefusals(cases);
});

test('deeply nested JSON (in an unknown field) is refused, not a stack overflow', () => {
  const text = JSON.stringify(validConfig()).replace(/}$/, `,"x-vendor":${'['.repeat(100000)}${']'.repeat(100000)}}`);
  const b = bundle(text);
  refused(run(['from-native', b]), join(b, 'config.json'), /x-vendor.*nested deeper than/);
});

test('config.json that is a directory or a FIFO is refused without blocking', () => {
  const d = join(dir, 'dir-config');
  mkdirSync(join(d, 'config.json'), { recursive: true });
  refused(run(['from-native', d]), join(d, 'config.json'));
  const f = join(dir, 'fifo-config');
  mkdirSync(f);
  spawnSync('mkfifo', [join(f, 'config.json')]);
  refused(run(['from-native', f]), join(f, 'config.json'));
});

test('an unsupported ociVersion names the supported range', () => {
  const b = bundleOf({ ...validConfig(), ociVersion: '2.0.0' });
  refused(run(['from-native', b]), join(b, 'config.json'), 'ociVersion', '1.0.x to 1.3.x');
});

test('non-Linux configs (windows, solaris, vm) are refused naming the section', () => {
  for (const platform of ['windows', 'solaris', 'vm']) {
    const b = bundleOf({ ...validConfig(), [platform]: {} });
    refused(run(['from-native', b]), join(b, 'config.json'), platform);
    rmSync(b, { recursive: true });
  }
});

test('empty args (and no args at all) are refused naming process.args', () => {
  let c: any = validConfig();
  c.process.args = [];
  refused(run(['from-native', bundleOf(c)]), 'process.args');
  rmSync(join(dir, 'bundle'), { recursive: true });
  c = validConfig();
  delete c.process.args;
  refused(run(['from-native', bundleOf(c)]), 'process.args');
});

test('a missing file or bundle directory is named', () => {
  const missing = join(dir, 'nope', 'config.json');
  refused(run(['from-native', missing]), missing);
  refused(run(['from-native', join(dir, 'nope')]), join(dir, 'nope'));
});

test('a directory without config.json is named', () => {
  const empty = join(dir, 'empty-bundle');
  mkdirSync(empty);
  refused(run(['from-native', empty]), empty, 'config.json');
});

test('names that are not valid for a domain are refused naming --name', () => {
  const b = bundleOf(validConfig());
  for (const name of ['a/b', '', 'x'.repeat(100), '-lead', 'sp ace', 'new\nline']) {
    refused(run(['from-native', '--name', name, b]), /name/);
    refused(run(['from-native', `--name=${name}`, b]), /name/);
  }
});

test('unknown flags, a missing value and no arguments are usage errors', () => {
  const b = bundleOf(validConfig());
  refused(run(['from-native', '--bogus', b]), '--bogus');
  refused(run(['from-native', b, '--name']), '--name');
  refused(run(['from-native']), /argument/);
  refused(run(['from-native', b, b]), /unexpected argument/);
  refused(run(['to-native']), /argument|domain/);
  refused(run(['to-native', '--bogus', 'x.xml']), '--bogus');
});

test('to-native on malformed XML names the file', () => {
  const cases: [string, string][] = [
    ['truncated.xml', "<domain type='lxc'><name>x</name><os><type>exe</ty"],
    ['not-xml.xml', 'hello, not xml'],
    ['mismatch.xml', "<domain type='lxc'><name>x</nam></domain>"],
    ['empty.xml', ''],
  ];
  for (const [file, text] of cases) {
    const p = join(dir, file);
    writeFileSync(p, text);
    refused(run(['to-native', p]), p);
  }
});


test('seeded fuzz: 120 mutated configs through from-native exit 0, or 2 with one line; never a crash', async () => {
  const rich = () => ({
    ...validConfig(),
    hostname: 'h',
    process: {
      ...validConfig().process,
      args: ['/bin/sh', '-c', 'x'],
      capabilities: { bounding: ['CAP_CHOWN'], effective: ['CAP_CHOWN'] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 10, hard: 20 }],
      oomScoreAdj: 5,
    },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=65536k'] },
    ],
    annotations: { 'org.example.a': 'b' },
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }, { type: 'network' }],
      resources: { memory: { limit: 1073741824 }, cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1' }, pids: { limit: 100 } },
      sysctl: { 'net.ipv4.ip_forward': '1' },
      maskedPaths: ['/proc/kcore'],
      seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }] },
    },
  });
  const VALUES: unknown[] = ['', 'x', '\r', 'a\u0001b', '/', '../..', -1, 0, 1.5, 2 ** 53, 2 ** 64, true, null, [], {}, ['x'], 'A=\r\n', '\u2028', 'é', 'x'.repeat(300)];
  const r = rng(424242);
  type Node = Record<string | number, unknown>;
  const paths = (v: unknown, at: (string | number)[] = []): (string | number)[][] => {
    const out = at.length ? [at] : [];
    if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
    return out;
  };
  const mutate = (doc: Node) => {
    const path = r.pick(paths(doc));
    let parent = doc;
    for (const step of path.slice(0, -1)) parent = parent[step] as Node;
    const key = path[path.length - 1]!;
    if (r.next() < 0.15) Array.isArray(parent) ? parent.splice(key as number, 1) : delete parent[key];
    else parent[key] = structuredClone(r.pick(VALUES));
  };
  const cases = Array.from({ length: 120 }, (_, i) => {
    const doc = rich() as unknown as Node;
    mutate(doc);
    if (r.next() < 0.3) mutate(doc);
    return { i, dir: bundle(JSON.stringify(doc), `fuzz-${i}`) };
  });
  const runAsync = (args: string[]) =>
    new Promise<{ status: number | null; stderr: string }>((done) => {
      const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (status) => done({ status, stderr }));
    });
  const problems: string[] = [];
  const exits: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < cases.length) {
        const { i, dir: b } = cases[next++]!;
        const res = await runAsync(['from-native', '--name', `fuzz-${i}`, b]);
        exits[String(res.status)] = (exits[String(res.status)] ?? 0) + 1;
        const errorLines = res.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('warning: '));
        if (res.status === 0 && errorLines.length === 0) continue;
        if (res.status === 2 && errorLines.length === 1 && errorLines[0]!.includes(join(b, 'config.json'))) continue;
        problems.push(`case ${i}: exit ${res.status}: ${res.stderr.slice(0, 300)}`);
      }
    }),
  );
  assert.equal(problems, [], problems.slice(0, 5).join('\n'));
  assert.ok((exits['0'] ?? 0) > 5 && (exits['2'] ?? 0) > 30, JSON.stringify(exits));
});

test('to-native on hostile XML: entities, deep nesting, binary', () => {
  const cases: [string, string][] = [
    ['entities.xml', `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><domain type='lxc'><name>&b;</name></domain>`],
    ['deep.xml', `<domain type='lxc'><name>x</name><metadata>${'<a>'.repeat(100000)}${'</a>'.repeat(100000)}</metadata></domain>`],
    ['binary.xml', '\u00ff\u00fe<\u0000d\u0000'],
  ];
  for (const [file, text] of cases) {
    const p = join(dir, file);
    writeFileSync(p, text);
    refused(run(['to-native', p]), p);
  }
});

test('to-native on a missing file, and malformed XML on stdin', () => {
  const missing = join(dir, 'missing.xml');
  refused(run(['to-native', missing]), missing);
  refused(run(["to-native", "-"], "<domain type='lxc'><name>"), "(stdin)");
});

test.run();
