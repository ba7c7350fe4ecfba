/**
 * A running container never loses its rootfs to a new image version: the spool entry is replaced
 * by a new version, a pass under `next-start` redefines the domain onto a new version directory,
 * and the running init still sees its old files while the old directory stays. Once the domain
 * stopped, a pass collects the old version; started again, it runs the new one. With remove
 * policy `keep`, a running domain whose entry left the spool keeps its tree.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { ImageBuilder, writeFiles } from '../image/fixtures.js';
import { dir, file, symlink } from '../helpers/tar.js';
import { cleanupDomains, domainSandbox, domainState, TEST_PREFIX, TEST_URI, virsh, waitForExit, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}rootfs-${process.pid}-`;
const CMD = ['/bin/sleep', '300'];

const tmp = domainSandbox(PREFIX, 'reconcile-rootfs');

/** A busybox image whose /etc/version says which version it is. */
function writeImage(at: string, version: string): string {
  rmSync(at, { recursive: true, force: true });
  const b = new ImageBuilder();
  const m = b.image({
    layers: [
      {
        entries: [
          dir('bin/'),
          file('bin/busybox', readFileSync('/bin/busybox'), { mode: 0o755 }),
          symlink('bin/sleep', 'busybox'),
          symlink('bin/sh', 'busybox'),
          dir('etc/'),
          file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
          file('etc/group', 'root:x:0:\n'),
          file('etc/version', version),
        ],
      },
    ],
    config: { Cmd: CMD, Env: ['PATH=/bin'] },
  });
  writeFiles(at, b.layoutFiles([m]));
  return m.digest.slice('sha256:'.length, 'sha256:'.length + 16);
}

const rootfsOf = (xml: string) => /<filesystem type='mount'[^>]*>\s*<source dir='([^']+)'\/>\s*<target dir='\/'\/>/.exec(xml)?.[1];

test('next-start: the running container keeps its old tree until it stops; then the old version is collected', async () => {
  const spool = join(tmp(), 'spool');
  const state = join(tmp(), 'state');
  const name = `${PREFIX}app`;
  const versions = join(state, 'bundles', name);
  const port = await connectLibvirt(TEST_URI);
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, prefix: PREFIX, log: silentLogger(), startPolicy: 'always', updatePolicy: 'next-start', stopTimeoutMs: 500 };
  try {
    const v1 = writeImage(join(spool, 'app'), 'one');
    const first = await syncOnce(port, opts);
    assert.equal(first.failed.map((f) => f.error), []);
    const init1 = await waitForInit(name, CMD);
    assert.is(readFileSync(`/proc/${init1.initPid}/root/etc/version`, 'utf8'), 'one');

    const v2 = writeImage(join(spool, 'app'), 'two');
    assert.is.not(v2, v1);
    const update = await syncOnce(port, opts);
    assert.equal(update.failed.map((f) => f.error), []);
    assert.equal(update.plan.map((i) => `${i.action} ${i.domain}`), [`update ${name}`]);
    assert.is(domainState(name).trim(), 'running', 'next-start stopped the domain');
    assert.is(rootfsOf(virsh('dumpxml', '--inactive', name)), join(versions, v2, 'rootfs'), 'the new definition does not point at the new version');
    assert.is(rootfsOf(virsh('dumpxml', name)), join(versions, v1, 'rootfs'), 'the live definition is not the old version');
    // the very process started on the old tree still reads its files
    assert.is(readFileSync(`/proc/${init1.initPid}/root/etc/version`, 'utf8'), 'one');
    assert.ok(existsSync(join(versions, v1, 'rootfs', 'etc', 'version')), 'the old version directory was removed under the running container');
    assert.is(readFileSync(join(versions, v2, 'rootfs', 'etc', 'version'), 'utf8'), 'two');
    assert.equal(update.collected, []);

    const steady = await syncOnce(port, opts);
    assert.equal(steady.collected, [], 'a version still live was collected');
    assert.is(readFileSync(`/proc/${init1.initPid}/root/etc/version`, 'utf8'), 'one');

    await port.stop(name, 500);
    assert.ok(await waitForExit(init1.initPid));
    const afterStop = await syncOnce(port, opts);
    assert.equal(afterStop.failed.map((f) => f.error), []);
    assert.equal(afterStop.collected, [join(name, v1)]);
    assert.equal(readdirSync(versions), [v2]);

    await port.start(name);
    const init2 = await waitForInit(name, CMD);
    assert.is(readFileSync(`/proc/${init2.initPid}/root/etc/version`, 'utf8'), 'two');
  } finally {
    await port.close();
    cleanupDomains(PREFIX);
  }
});

test('remove policy keep: a running domain whose entry left the spool keeps its tree', async () => {
  const spool = join(tmp(), 'spool-keep');
  const state = join(tmp(), 'state-keep');
  const name = `${PREFIX}kept`;
  const port = await connectLibvirt(TEST_URI);
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, prefix: PREFIX, log: silentLogger(), startPolicy: 'always', removePolicy: 'keep', stopTimeoutMs: 500 };
  try {
    const v1 = writeImage(join(spool, 'kept'), 'kept');
    assert.equal((await syncOnce(port, opts)).failed.map((f) => f.error), []);
    const init = await waitForInit(name, CMD);
    rmSync(join(spool, 'kept'), { recursive: true });
    for (let i = 0; i < 2; i++) {
      const r = await syncOnce(port, opts);
      assert.equal(r.plan.map((p) => p.action), ['nothing']);
      assert.equal(r.collected, [], 'the tree of a kept domain was collected');
    }
    assert.is(readFileSync(`/proc/${init.initPid}/root/etc/version`, 'utf8'), 'kept');
    assert.ok(existsSync(join(state, 'bundles', name, v1, 'rootfs', 'bin', 'busybox')));

    // stopped and still defined: its definition still names the tree, so it stays
    await port.stop(name, 500);
    assert.ok(await waitForExit(init.initPid));
    assert.equal((await syncOnce(port, opts)).collected, []);
    assert.ok(existsSync(join(state, 'bundles', name, v1, 'rootfs', 'bin', 'busybox')));
  } finally {
    await port.close();
    cleanupDomains(PREFIX);
  }
});

test.run();
