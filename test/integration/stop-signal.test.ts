/**
 * Stopping as the image asks, on the real libvirtd through the real daemon: two settings entries of
 * one busybox image, removed from the spool together. One runs a shell that traps SIGUSR1 and exits
 * on it, with `stopSignal: SIGUSR1` and a long `stopTimeout`: it gets SIGUSR1 and stops by itself
 * (forced: false) well before its timeout; it cannot have died of SIGUSR1 otherwise, since a pid
 * namespace's init ignores signals it has no handler for. The other (sleep, which handles nothing)
 * ignores its SIGTERM and is destroyed after its 2 s (forced: true), without holding up the first.
 * Domains are named ocivirt-test-stop-<pid>-… and removed afterwards, whatever happens.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { TEST_PREFIX, cleanupDomains, makeTempDir, removeTempDir, virsh } from '../helpers/libvirt.js';
import { DaemonProcess, stopAndClean, daemonDirs, writeConfig, type DaemonDirs } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}stop-${process.pid}-`;
let tmp = '';
let dirs: DaemonDirs;
let daemon: DaemonProcess | undefined;
const dom = (stem: string) => `${PREFIX}${stem}`;

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('stop');
  dirs = daemonDirs(tmp);
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

function putSettings(name: string, value: unknown): void {
  const staged = join(dirs.staging, name);
  writeFileSync(staged, JSON.stringify(value));
  renameSync(staged, join(dirs.spool, name));
}

test('stopSignal SIGUSR1 reaches a trapping init: stopped by itself (forced false); a stubborn one is destroyed after its stopTimeout (forced true)', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: busyboxLayerEntries() }], config: { Entrypoint: ['/bin/sleep'], Cmd: ['1000'], Env: ['PATH=/bin'] } });
  writeFiles(join(dirs.staging, 'base'), b.layoutFiles([m]));
  renameSync(join(dirs.staging, 'base'), join(dirs.spool, 'base'));
  putSettings('base.ocivirt.json', { imageOnly: true });
  putSettings('trap.ocivirt.json', {
    image: 'base',
    entrypoint: ['/bin/sh', '-c', 'trap "echo got-usr1 > /tmp/x; exit 0" USR1; while :; do sleep 1; done'],
    stopSignal: 'SIGUSR1',
    stopTimeout: 60,
    start: true,
  });
  // the init shim forwards SIGTERM to the process, which sleep would die of: this one ignores it
  putSettings('stubborn.ocivirt.json', { image: 'base', entrypoint: ['/bin/sh', '-c', 'trap "" TERM; while :; do sleep 1; done'], stopTimeout: 2, start: true });
  const configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 500, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 30 });
  daemon = await DaemonProcess.start(configFile);
  for (const stem of ['trap', 'stubborn']) await daemon.waitFor((e) => e.event === 'domain.started' && e.domain === dom(stem), 120_000, `${stem} started`);
  // the shell has set its trap once it runs its loop: give it a moment
  await new Promise((r) => setTimeout(r, 1_500));

  const from = daemon.lines.length;
  rmSync(join(dirs.spool, 'trap.ocivirt.json'));
  rmSync(join(dirs.spool, 'stubborn.ocivirt.json'));
  const trap = await daemon.waitFor((e) => e.event === 'domain.stopped' && e.domain === dom('trap'), 60_000, 'trap stopped', from);
  assert.equal([trap.signal, trap.forced], ['SIGUSR1', false], JSON.stringify(trap));
  assert.ok((trap.ms as number) < 30_000, `ms ${String(trap.ms)}`);
  const stubborn = await daemon.waitFor((e) => e.event === 'domain.stopped' && e.domain === dom('stubborn'), 60_000, 'stubborn stopped', from);
  assert.equal([stubborn.signal, stubborn.forced], ['SIGTERM', true], JSON.stringify(stubborn));
  assert.ok((stubborn.ms as number) >= 2_000, `ms ${String(stubborn.ms)}`);
  for (const stem of ['trap', 'stubborn']) await daemon.waitFor((e) => e.event === 'domain.undefined' && e.domain === dom(stem), 60_000, `${stem} undefined`, from);
  const left = virsh('list', '--all', '--name');
  assert.not.ok(left.includes(dom('trap')) || left.includes(dom('stubborn')), left);
});

test.run();
