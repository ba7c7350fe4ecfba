/**
 * Trust boundaries: directories others could write are refused (or allowed loudly), root.path
 * must stay inside its bundle with symlinks followed, and host paths taken by mounts must come
 * from the bundle or the allow-list.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import type { Mount, RuntimeConfig } from '../../src/oci/runtime-spec.js';
import { checkBundlePaths, checkDirectoryTrust, checkHostDevices } from '../../src/spool/trust.js';

let top = '';
test.before.each(() => {
  top = mkdtempSync(join(tmpdir(), 'ocivirt-trust-'));
});
test.after.each(() => {
  rmSync(top, { recursive: true, force: true });
});

async function refusal(p: Promise<unknown>): Promise<InputError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof InputError) return e;
    throw e;
  }
  throw new Error('accepted');
}

// ---- directories ------------------------------------------------------------------------------

test('an owner-only directory is trusted', async () => {
  const d = join(top, 'spool');
  mkdirSync(d, { mode: 0o700 });
  assert.equal(await checkDirectoryTrust(d), { warnings: [] });
  chmodSync(d, 0o755);
  assert.equal(await checkDirectoryTrust(d), { warnings: [] });
});

test('group- or other-writable directories are refused, naming the directory and the mode', async () => {
  for (const m of [0o775, 0o757, 0o777]) {
    const d = join(top, `spool-${m.toString(8)}`);
    mkdirSync(d);
    chmodSync(d, m);
    const e = await refusal(checkDirectoryTrust(d));
    assert.is(e.file, d);
    assert.match(e.reason, new RegExp(`writable by group or others \\(mode 0${m.toString(8)}\\)`));
  }
});

test('allowInsecure turns the refusal into warnings', async () => {
  const d = join(top, 'spool');
  mkdirSync(d);
  chmodSync(d, 0o777);
  const { warnings } = await checkDirectoryTrust(d, { allowInsecure: true });
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, /insecure \(allowed by setting\): .*mode 0777/);
});

test('a directory owned by another user is refused', async () => {
  const d = join(top, 'spool');
  mkdirSync(d, { mode: 0o700 });
  // As root, hand it to someone else; as another user, claim to be a third one.
  const me = process.getuid!();
  if (me === 0) chownSync(d, 4242, 4242);
  const e = await refusal(checkDirectoryTrust(d, { uid: me === 0 ? 0 : me + 1 }));
  assert.match(e.reason, /owned by uid \d+, not by root or uid/);
});

test('a parent others can write (no sticky bit) is refused: the directory could be swapped', async () => {
  const parent = join(top, 'shared');
  mkdirSync(parent);
  chmodSync(parent, 0o777);
  const d = join(parent, 'spool');
  mkdirSync(d, { mode: 0o700 });
  const e = await refusal(checkDirectoryTrust(d));
  assert.match(e.reason, /parent .*shared is writable by group or others without the sticky bit/);
  chmodSync(parent, 0o1777); // like /tmp: fine
  assert.equal(await checkDirectoryTrust(d), { warnings: [] });
});

test('a symlink to a directory is judged by its target; a missing or non-directory path is refused', async () => {
  const d = join(top, 'real');
  mkdirSync(d);
  chmodSync(d, 0o777);
  symlinkSync(d, join(top, 'link'));
  assert.match((await refusal(checkDirectoryTrust(join(top, 'link')))).reason, /mode 0777/);
  assert.match((await refusal(checkDirectoryTrust(join(top, 'missing')))).reason, /ENOENT/);
  writeFileSync(join(top, 'file'), '');
  assert.match((await refusal(checkDirectoryTrust(join(top, 'file')))).reason, /not a directory/);
});

// ---- bundle paths ---------------------------------------------------------------------------

function bundleWith(rootPath: string, mounts: Mount[] = []): { dir: string; config: RuntimeConfig } {
  const dir = join(top, 'bundle');
  mkdirSync(join(dir, 'rootfs'), { recursive: true });
  const config: RuntimeConfig = { ociVersion: '1.2.0', root: { path: rootPath }, mounts, process: { cwd: '/', args: ['sh'], user: { uid: 0, gid: 0 } } };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return { dir, config };
}

test('root.path inside the bundle is accepted, relative or absolute, and returned resolved', async () => {
  let b = bundleWith('rootfs');
  assert.is((await checkBundlePaths(b.config, b.dir, [])).rootfs, join(b.dir, 'rootfs'));
  b = bundleWith(join(top, 'bundle', 'rootfs'));
  assert.is((await checkBundlePaths(b.config, b.dir, [])).rootfs, join(b.dir, 'rootfs'));
});

test('root.path "/" , "..", "." or outside the bundle is refused', async () => {
  mkdirSync(join(top, 'other'));
  for (const p of ['/', '..', '.', '../other', '/etc', 'rootfs/../..']) {
    const b = bundleWith(p);
    const e = await refusal(checkBundlePaths(b.config, b.dir, []));
    assert.is(e.field, 'root.path', p);
    assert.is(e.file, join(b.dir, 'config.json'));
    assert.match(e.reason, /outside the bundle|inside its bundle/, p);
  }
});

test('root.path through a symlink that leaves the bundle is refused (symlinks are followed)', async () => {
  const b = bundleWith('escape');
  symlinkSync('/', join(b.dir, 'escape'));
  let e = await refusal(checkBundlePaths(b.config, b.dir, []));
  assert.match(e.reason, /"escape" resolves to \/, outside the bundle/);
  // A link to a sibling of the bundle, and a link in an intermediate component.
  mkdirSync(join(top, 'sibling'));
  symlinkSync(join(top, 'sibling'), join(b.dir, 'sib'));
  e = await refusal(checkBundlePaths({ ...b.config, root: { path: 'sib' } }, b.dir, []));
  assert.is(e.field, 'root.path');
  symlinkSync('..', join(b.dir, 'rootfs', 'up'));
  e = await refusal(checkBundlePaths({ ...b.config, root: { path: 'rootfs/up/..' } }, b.dir, []));
  assert.is(e.field, 'root.path');
  // A link that stays inside is fine.
  symlinkSync('rootfs', join(b.dir, 'current'));
  assert.is((await checkBundlePaths({ ...b.config, root: { path: 'current' } }, b.dir, [])).rootfs, join(b.dir, 'rootfs'));
});

test('a missing root.path or one that is a file is refused', async () => {
  let b = bundleWith('nope');
  assert.match((await refusal(checkBundlePaths(b.config, b.dir, []))).reason, /cannot be resolved \(ENOENT\)/);
  rmSync(b.dir, { recursive: true });
  b = bundleWith('config.json');
  assert.match((await refusal(checkBundlePaths(b.config, b.dir, []))).reason, /not a directory/);
});

test('bind sources must be inside the bundle or under the allow-list; "/" is refused', async () => {
  const shared = join(top, 'shared');
  mkdirSync(join(shared, 'data'), { recursive: true });
  const bind = (source: string, extra: Partial<Mount> = {}): Mount => ({ destination: '/mnt', type: 'bind', source, options: ['rbind'], ...extra });

  let b = bundleWith('rootfs', [bind('/')]);
  let e = await refusal(checkBundlePaths(b.config, b.dir, [shared]));
  assert.is(e.field, 'mounts[0].source');
  assert.match(e.reason, /resolves to \/, outside the bundle and the allowed mount sources/);
  rmSync(b.dir, { recursive: true });

  b = bundleWith('rootfs', [bind(join(shared, 'data')), bind('rootfs')]);
  const ok = await checkBundlePaths(b.config, b.dir, [shared]);
  assert.equal(ok.mountSources.map((m) => m.path), [join(shared, 'data'), join(b.dir, 'rootfs')]);
  // The same bundle with no allow-list: the outside source is refused, by index.
  e = await refusal(checkBundlePaths(b.config, b.dir, []));
  assert.is(e.field, 'mounts[0].source');
  assert.match(e.reason, /none configured/);
  rmSync(b.dir, { recursive: true });

  // A bind written as options only (type "none"), and one escaping through a symlink in the allow-list.
  symlinkSync('/etc', join(shared, 'etc-link'));
  b = bundleWith('rootfs', [bind(join(shared, 'etc-link'), { type: 'none', options: ['bind'] })]);
  e = await refusal(checkBundlePaths(b.config, b.dir, [shared]));
  assert.match(e.reason, /resolves to \/etc/);
  rmSync(b.dir, { recursive: true });

  // A prefix that only looks like the allowed directory is not inside it.
  mkdirSync(`${shared}-evil`);
  b = bundleWith('rootfs', [bind(`${shared}-evil`)]);
  assert.is((await refusal(checkBundlePaths(b.config, b.dir, [shared]))).field, 'mounts[0].source');
});

test('pseudo filesystems pass; device and overlay paths are host paths too', async () => {
  let b = bundleWith('rootfs', [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup2', source: '/sys/fs/cgroup' },
  ]);
  assert.equal((await checkBundlePaths(b.config, b.dir, [])).mountSources, []);
  rmSync(b.dir, { recursive: true });

  b = bundleWith('rootfs', [{ destination: '/disk', type: 'ext4', source: '/dev/null' }]);
  assert.is((await refusal(checkBundlePaths(b.config, b.dir, []))).field, 'mounts[0].source');
  rmSync(b.dir, { recursive: true });

  b = bundleWith('rootfs', [{ destination: '/o', type: 'overlay', source: 'overlay', options: ['lowerdir=rootfs:/', 'upperdir=rootfs'] }]);
  const e = await refusal(checkBundlePaths(b.config, b.dir, []));
  assert.is(e.field, 'mounts[0].options[0]');
  assert.match(e.reason, /"\/" resolves to \//);
});

test('a bind without a source, or a relative allow-list entry, is refused', async () => {
  const b = bundleWith('rootfs', [{ destination: '/x', type: 'bind' }]);
  assert.is((await refusal(checkBundlePaths(b.config, b.dir, []))).field, 'mounts[0].source');
  const c = bundleWith('rootfs');
  assert.match((await refusal(checkBundlePaths(c.config, c.dir, ['relative/dir']))).reason, /must be an absolute path/);
});

test("runc spec's default mounts (proc, tmpfs, devpts, mqueue, sysfs, cgroup) need no allow-list", async () => {
  const b = bundleWith('rootfs');
  rmSync(join(b.dir, 'config.json'));
  const r = spawnSync('runc', ['spec'], { cwd: b.dir, encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const config = JSON.parse(readFileSync(join(b.dir, 'config.json'), 'utf8')) as RuntimeConfig;
  assert.ok((config.mounts ?? []).length >= 5);
  const ok = await checkBundlePaths(config, b.dir, []);
  assert.equal(ok.mountSources, []);
  assert.is(ok.rootfs, join(b.dir, 'rootfs'));
});

test('host devices and network interfaces need an allow-list; FIFOs do not', () => {
  const cfg = (linux: RuntimeConfig['linux']): RuntimeConfig => ({ ociVersion: '1.2.0', root: { path: 'rootfs' }, linux });
  const file = '/b/config.json';
  let e = (() => {
    try {
      checkHostDevices(cfg({ devices: [{ type: 'p', path: '/dev/fifo' }, { type: 'b', path: '/dev/sda', major: 8, minor: 0 }] }), file);
    } catch (x) {
      return x as InputError;
    }
    throw new Error('accepted');
  })();
  assert.instance(e, InputError);
  assert.is(e.file, file);
  assert.is(e.field, 'linux.devices[1].path');
  assert.match(e.reason, /host device "\/dev\/sda" is not in the allowed devices \(none configured\)/);
  checkHostDevices(cfg({ devices: [{ type: 'c', path: '/dev/fuse', major: 10, minor: 229 }] }), file, { devices: ['/dev/fuse'] });

  e = (() => {
    try {
      checkHostDevices(cfg({ netDevices: { eth0: {}, 'en.1': {} } }), file, { netDevices: ['eth0'] });
    } catch (x) {
      return x as InputError;
    }
    throw new Error('accepted');
  })();
  assert.is(e.field, 'linux.netDevices["en.1"]');
  checkHostDevices(cfg({ netDevices: { eth0: { name: 'eth0' } } }), file, { netDevices: ['eth0'] });
});

test.run();
