/**
 * desiredDomain defines from the paths the trust check resolved: root.path and bind sources that
 * are symlinks inside the bundle become the real directories in the domain, so re-pointing the
 * link later changes nothing libvirt mounts until a pass checks (and redefines) again.
 */
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { desiredDomain } from '../../src/reconcile/desired.js';
import type { SpoolEntry } from '../../src/spool/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-desired-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function rootfs(dir: string): void {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'bin/sh'), '#!\n');
  chmodSync(join(dir, 'bin/sh'), 0o755);
}

test('root.path and a bind source given as symlinks are defined as the directories they resolved to', async () => {
  const bundle = join(tmp, 'web');
  rootfs(join(bundle, 'rootfs-v1'));
  rootfs(join(bundle, 'rootfs-v2'));
  mkdirSync(join(bundle, 'data-v1'));
  symlinkSync('rootfs-v1', join(bundle, 'rootfs'));
  symlinkSync('data-v1', join(bundle, 'data'));
  const config = {
    ociVersion: '1.0.2',
    process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    mounts: [{ destination: '/data', type: 'bind', source: join(bundle, 'data'), options: ['rbind'] }],
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  };
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const entry: SpoolEntry = { name: 'web', path: bundle, kind: 'bundle', domainName: 'web', fingerprint: '' };
  const sources = (d: Awaited<ReturnType<typeof desiredDomain>>) =>
    Object.fromEntries(d.domain.devices.filesystems.map((fs) => [fs.target, fs.source.dir]));

  const first = await desiredDomain(entry, {}, 1);
  const real = realpathSync(bundle);
  assert.equal(sources(first), { '/': join(real, 'rootfs-v1'), '/data': join(real, 'data-v1') });

  // the writer re-points the link: the next pass sees (and checks) the new target, a new digest
  rmSync(join(bundle, 'rootfs'));
  symlinkSync('rootfs-v2', join(bundle, 'rootfs'));
  const second = await desiredDomain(entry, {}, 1);
  assert.is(sources(second)['/'], join(real, 'rootfs-v2'));
  assert.is.not(second.domain.metadata.ours?.desiredDigest, first.domain.metadata.ours?.desiredDigest);
});

test.run();
