/**
 * Starting and stopping the daemon: a group-writable spool, state or export directory is refused
 * (exit 2, one line naming the directory) unless allowInsecureDirs says otherwise, and then it
 * is logged at start; an invalid configuration is exit 2 naming file and key; SIGTERM in the
 * middle of a long image unpack abandons it after shutdownTimeoutSec and exits 0, and the next
 * start converges (the domain is defined once, from a complete rootfs).
 */
import { chmodSync, existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ImageBuilder, writeFiles } from '../image/fixtures.js';
import { file as tarFile, dir as tarDir } from '../helpers/tar.js';
import { domainSandbox, isDefined, TEST_PREFIX, virsh } from '../helpers/libvirt.js';
import { DaemonProcess, daemonDirs, writeConfig } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}s${process.pid}-`;

const tmp = domainSandbox(PREFIX, 'daemon-start');

for (const which of ['spool', 'state', 'export'] as const) {
  test(`a group-writable ${which} directory: refused with exit 2, or allowed loudly`, async () => {
    const dirs = daemonDirs(join(tmp(), `insecure-${which}`));
    const config = join(dirs.base, 'ocivirt.json');
    writeConfig(config, dirs, { namePrefix: PREFIX });
    // state/export are created by the daemon when missing; make them exist first
    const d0 = await DaemonProcess.start(config);
    assert.is((await d0.stop()).code, 0);
    chmodSync(dirs[which], 0o770);
    const refused = await DaemonProcess.startFailing(config);
    assert.is(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`^ocivirt daemon: ${dirs[which]}: refused: .*writable by group or others.*allowInsecureDirs`, 'm'));
    assert.is(refused.stderr.trim().split('\n').length, 1, 'one line');

    const d = await DaemonProcess.start(config, { OCIVIRT_ALLOW_INSECURE_DIRS: 'true' });
    const warned = d.events((e) => e.event === 'daemon.insecure');
    assert.is(warned.length, 1);
    assert.is(warned[0]!.path, dirs[which]);
    assert.is(warned[0]!.level, 'warn');
    assert.is((await d.stop()).code, 0);
  });
}

test('an invalid configuration file: exit 2 naming the file and the key', async () => {
  const dirs = daemonDirs(join(tmp(), 'invalid'));
  const config = join(dirs.base, 'ocivirt.json');
  writeConfig(config, dirs, { concurrency: 0 });
  const r = await DaemonProcess.startFailing(config);
  assert.is(r.code, 2);
  assert.match(r.stderr, `${config}: concurrency: must be an integer from 1 to 256, got 0`);
});

test('SIGTERM during a long unpack: cut after the timeout, exit 0; the next start converges to one domain', async () => {
  const dirs = daemonDirs(join(tmp(), 'abandon'));
  const config = join(dirs.base, 'ocivirt.json');
  writeConfig(config, dirs, { namePrefix: PREFIX, shutdownTimeoutSec: 1, quietMs: 200 });
  // many small files (80,000): applying them takes seconds even on a quiet machine, far longer
  // than the shutdown timeout (with 40,000 the apply sometimes ended within it: nothing to cut)
  const entries = [tarDir('bin/'), tarFile('bin/sh', '#!fake\n', { mode: 0o755 })];
  for (let d = 0; d < 400; d++) {
    entries.push(tarDir(`d${d}/`));
    for (let f = 0; f < 200; f++) entries.push(tarFile(`d${d}/f${f}`, randomBytes(64)));
  }
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries, compression: 'none' }], config: { Cmd: ['/bin/sh'] } });
  writeFiles(join(dirs.staging, 'big'), b.layoutFiles([m]));
  const name = `${PREFIX}big`;
  const d = await DaemonProcess.start(config);
  renameSync(join(dirs.staging, 'big'), join(dirs.spool, 'big'));
  await d.waitFor((e) => e.event === 'layer.progress' && String(e.entry).endsWith('/big'), 15_000, 'unpack under way');
  d.signal('SIGTERM');
  const { code } = await d.exited;
  assert.is(code, 0, d.stderr);
  assert.is(d.events((e) => e.event === 'daemon.stopped').length, 1);
  const definedBefore = d.events((e) => e.event === 'domain.defined').length;
  if (definedBefore === 0) {
    // a slow machine cuts the unpack after the timeout (and says so: daemon.stopping abandoned); on
    // a fast one it ends within the timeout and the stopping pass defines nothing. Either way no
    // domain comes from a cut unpack, and the next start below converges to exactly one define.
    const said = d.events((e) => e.event !== 'layer.progress').map((e) => `${e.event}${e.err !== undefined ? ` (${String(e.err)})` : ''}`);
    console.log(`SIGTERM during the unpack; the daemon said: ${said.join(', ')}`);
    const stopping = d.events((e) => e.event === 'daemon.stopping');
    assert.is(stopping[0]?.inFlight, true, 'the stop came during the unpack: the daemon must say work was in flight');
    assert.ok(stopping.length <= 2 && stopping.slice(1).every((e) => e.abandoned === true), 'after the first, only an abandonment is said');
    assert.not.ok(isDefined(name), 'nothing defined from a cut unpack');
  }

  const again = await DaemonProcess.start(config);
  try {
    if (definedBefore === 0) await again.waitForEntry('domain.defined', 'big', 120_000);
    else await again.waitFor((e) => e.event === 'sync.completed' && e.settling === 0 && Array.isArray(e.scope), 60_000, 'a pass over big');
    assert.ok(isDefined(name));
    assert.is(definedBefore + again.events((e) => e.event === 'domain.defined').length, 1, 'defined exactly once over both runs');
    const xml = virsh('dumpxml', '--inactive', name);
    const rootfs = /<filesystem type='mount'[^>]*>\s*<source dir='([^']+)'\/>\s*<target dir='\/'\/>/.exec(xml)?.[1];
    assert.ok(rootfs?.startsWith(join(dirs.state, 'bundles', name) + '/'), `rootfs in the state directory: ${rootfs}`);
    assert.ok(existsSync(join(rootfs!, 'd199', 'f199')), 'the rootfs is complete');
  } finally {
    assert.is((await again.stop()).code, 0);
  }
});

test.run();
