/** startProblems: what libvirt-lxc would refuse only at start, found in the rootfs before define. */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startProblems } from '../../src/spool/preflight.js';
import { emptyDomain, type Domain, type Filesystem } from '../../src/xml/domain.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-preflight-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A rootfs with the given directories and an executable /bin/busybox (plus /bin/sh -> /bin/busybox). */
function rootfs(dirs: string[]): string {
  const r = join(tmp, `r${n++}`);
  mkdirSync(join(r, 'bin'), { recursive: true });
  for (const d of dirs) mkdirSync(join(r, d), { recursive: true });
  writeFileSync(join(r, 'bin/busybox'), '#!\n');
  chmodSync(join(r, 'bin/busybox'), 0o755);
  symlinkSync('/bin/busybox', join(r, 'bin/sh'));
  return r;
}

const fs = (target: string, readonly = false): Filesystem => ({ type: 'mount', source: { dir: '/x' }, target, readonly, attrs: {}, extra: [] });

function domain(init: string, readonlyRoot: boolean, mounts: string[] = []): Domain {
  const d = emptyDomain('t');
  d.os.init = init;
  d.devices.filesystems = [fs('/', readonlyRoot), ...mounts.map((m) => fs(m))];
  return d;
}

const paths = async (d: Domain, r: string) => (await startProblems(d, r)).map((p) => `${p.field} ${p.path}`);

test('a read-only root needs /proc, /sys and /dev in the rootfs; a writable one does not', async () => {
  const bare = rootfs([]);
  assert.equal(await paths(domain('/bin/sh', true), bare), ['root.readonly /proc', 'root.readonly /sys', 'root.readonly /dev']);
  assert.equal(await paths(domain('/bin/sh', false), bare), []);
  assert.equal(await paths(domain('/bin/sh', true), rootfs(['proc', 'sys', 'dev'])), []);
  const [first] = await startProblems(domain('/bin/sh', true), bare);
  assert.match(first!.reason, 'Failed to mkdir /proc: Read-only file system');
  assert.match(first!.reason, bare);
});

test('mount points are resolved inside the rootfs: a symlink to a host path that exists does not count', async () => {
  const r = rootfs(['proc', 'sys']);
  symlinkSync('/tmp', join(r, 'dev')); // /tmp exists on the host, not in this rootfs
  assert.equal(await paths(domain('/bin/sh', true), r), ['root.readonly /dev']);
  mkdirSync(join(r, 'tmp'));
  assert.equal(await paths(domain('/bin/sh', true), r), []);
});

test('init must be an executable file in the rootfs, unless a mount provides it', async () => {
  const r = rootfs([]);
  assert.equal(await paths(domain('/bin/missing', false), r), ['process.args[0] /bin/missing']);
  writeFileSync(join(r, 'bin/plain'), 'x');
  assert.equal(await paths(domain('/bin/plain', false), r), ['process.args[0] /bin/plain'], 'not executable');
  assert.equal(await paths(domain('/bin', false), r), ['process.args[0] /bin'], 'a directory');
  assert.equal(await paths(domain('/opt/tool/run', false, ['/opt/tool']), r), []);
});

test('with a read-only root, mount destinations must exist unless inside another mount', async () => {
  const r = rootfs(['proc', 'sys', 'dev', 'data']);
  assert.equal(await paths(domain('/bin/sh', true, ['/data', '/srv/missing', '/dev/shm', '/data/sub']), r), ['root.readonly /srv/missing']);
  assert.equal(await paths(domain('/bin/sh', false, ['/srv/missing']), r), [], 'a writable root: libvirt creates it');
});

test('ocivirt from-native warns on stderr about a read-only rootfs without its mount points, and still prints the XML', () => {
  const bundle = join(tmp, 'cli-bundle');
  const r = rootfs(['sys', 'dev']);
  const config = {
    ociVersion: '1.0.2',
    process: { args: ['/bin/busybox', 'sleep', '1'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: r, readonly: true },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  };
  mkdirSync(bundle);
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const bin = fileURLToPath(new URL('../../../bin/ocivirt', import.meta.url));
  const out = spawnSync(bin, ['from-native', bundle], { encoding: 'utf8', timeout: 60_000 });
  assert.is(out.status, 0, out.stderr);
  assert.match(out.stdout, '<init>/bin/busybox</init>');
  const warnings = out.stderr.split('\n').filter((l) => l.startsWith('warning: root.readonly'));
  assert.is(warnings.length, 1, out.stderr);
  assert.match(warnings[0]!, 'has no directory /proc');
});

test.run();
