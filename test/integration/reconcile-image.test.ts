/**
 * An OCI image layout in the spool: unpacked into the state directory (never into the spool),
 * defined with the image digest in its ownership, started, its init seen running; unchanged
 * passes make no writes; removing the entry undefines the domain and collects its rootfs from
 * the state directory.
 */
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readOwnership } from '../../src/convert/ownership.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import { silentLogger } from '../../src/log.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { ImageBuilder, treeListing, writeFiles } from '../image/fixtures.js';
import { dir, file, symlink } from '../helpers/tar.js';
import { countingPort, domainSandbox, isDefined, TEST_PREFIX, TEST_URI, virsh, waitForExit, waitForInit } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}img-${process.pid}-`;

const tmp = domainSandbox(PREFIX, 'reconcile-image');

test('image layout entry: unpacked into the state dir, defined, started, removed and collected', async () => {
  const spool = join(tmp(), 'spool');
  const state = join(tmp(), 'state');
  const b = new ImageBuilder();
  const manifest = b.image({
    layers: [
      {
        entries: [
          dir('bin/'),
          file('bin/busybox', readFileSync('/bin/busybox'), { mode: 0o755 }),
          symlink('bin/sleep', 'busybox'),
          symlink('bin/sh', 'busybox'),
          symlink('bin/cat', 'busybox'),
          dir('etc/'),
          file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
          file('etc/group', 'root:x:0:\n'),
        ],
      },
    ],
    config: { Cmd: ['/bin/sleep', '300'], Env: ['PATH=/bin'] },
  });
  writeFiles(join(spool, 'app'), b.layoutFiles([manifest]));
  const spoolBefore = treeListing(spool);

  const port = await connectLibvirt(TEST_URI);
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, prefix: PREFIX, log: silentLogger(), startPolicy: 'always', stopTimeoutMs: 500 };
  const name = `${PREFIX}app`;
  try {
    const r = await syncOnce(port, opts);
    assert.equal(r.failed.map((f) => f.error), []);
    assert.equal(r.plan.map((i) => `${i.action} ${i.domain}`), [`create ${name}`]);
    // one directory per image version under the domain's
    const bundle = join(state, 'bundles', name, manifest.digest.slice('sha256:'.length, 'sha256:'.length + 16));
    assert.ok(statSync(join(bundle, 'rootfs', 'bin', 'busybox')).isFile(), 'rootfs not unpacked in the state dir');
    const init = await waitForInit(name, ['/bin/sleep', '300']);
    const owner = readOwnership(parseDomainXml(virsh('dumpxml', '--inactive', name)));
    const instance = readFileSync(join(state, 'instance-id'), 'utf8').trim();
    assert.equal(owner, { entry: 'app', desiredDigest: owner?.desiredDigest ?? '', instance, bundle, imageDigest: manifest.digest });
    assert.match(virsh('dumpxml', '--inactive', name), `<source dir='${bundle}/rootfs'/>`);

    const counted = countingPort(port);
    for (let i = 0; i < 3; i++) {
      const again = await syncOnce(counted.port, opts);
      assert.equal(again.plan.map((p) => p.action), ['nothing']);
    }
    assert.is(counted.writes(), 0);
    assert.equal(treeListing(spool), spoolBefore, 'the spool was written to');

    rmSync(join(spool, 'app'), { recursive: true });
    const removed = await syncOnce(port, opts);
    assert.equal(removed.failed, []);
    assert.equal(removed.collected, [name]);
    assert.not.ok(isDefined(name));
    assert.ok(await waitForExit(init.initPid));
    assert.equal(readdirSync(join(state, 'bundles')), [], 'rootfs left in the state dir');
  } finally {
    await port.close();
  }
});

test.run();
