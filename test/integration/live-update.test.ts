/**
 * Live updates on the real libvirtd, through the real daemon (default `updatePolicy: live`): a
 * running busybox container's memory limit changed in its settings file is in the container's own
 * cgroup (memory.max or memory.limit_in_bytes, read inside it) and in `virsh memtune` without a
 * restart: the same init pid before and after, no second `domain.started`. The container runs its
 * process through ocivirt's init shim (pid 1 inside is /.ocivirt/init). An env change then waits for
 * the next start (the new definition mounts a new shim directory, whose spec has it):
 * `domain.updated` says it is pending in the converter's terms, `status.json` shows `pendingChange`.
 * Domains are named ocivirt-test-live-<pid>-… and removed afterwards, whatever happens.
 */
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { SHIM_INIT, SHIM_MOUNT } from '../../src/shim/domain.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { TEST_PREFIX, cleanupDomains, initPidOf, makeTempDir, memoryLimitInside, pid1Inside, removeTempDir, virsh } from '../helpers/libvirt.js';
import { DaemonProcess, stopAndClean, daemonDirs, putSpoolJson, writeConfig, type DaemonDirs } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}live-${process.pid}-`;
let tmp = '';
let dirs: DaemonDirs;
let daemon: DaemonProcess | undefined;
const name = `${PREFIX}web`;

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('live');
  dirs = daemonDirs(tmp);
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

const putSettings = (file: string, value: unknown) => putSpoolJson(dirs, file, value);

/** The host directory the definition (running, or the next start's) mounts at /.ocivirt. */
const shimDirOf = (...flags: string[]) => parseDomainXml(virsh('dumpxml', name, ...flags)).devices.filesystems.find((f) => f.target === SHIM_MOUNT)?.source.dir;

/** `virsh memtune --live`'s hard_limit in KiB. */
function liveHardLimitKiB(): number {
  const line = virsh('memtune', name, '--live').split('\n').find((l) => l.trim().startsWith('hard_limit'));
  return Number(line?.split(':')[1]?.trim());
}

test('a memory limit changed in the spool is in the running container\'s cgroup without a restart; an env change is pending', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: busyboxLayerEntries() }], config: { Entrypoint: ['/bin/sleep'], Cmd: ['1000'], Env: ['PATH=/bin'] } });
  writeFiles(join(dirs.staging, 'base'), b.layoutFiles([m]));
  renameSync(join(dirs.staging, 'base'), join(dirs.spool, 'base'));
  putSettings('base.ocivirt.json', { imageOnly: true });
  putSettings('web.ocivirt.json', { image: 'base', memory: '64M', start: true });
  const configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 300, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 2 });
  daemon = await DaemonProcess.start(configFile);
  await daemon.waitFor((e) => e.event === 'domain.started' && e.domain === name, 120_000, 'started');
  assert.is(memoryLimitInside(name), 64 * 1024 * 1024);
  assert.is(pid1Inside(name)[0], SHIM_INIT, 'the process runs through the init shim');
  const pid = initPidOf(name);

  let from = daemon.lines.length;
  putSettings('web.ocivirt.json', { image: 'base', memory: '128M', start: true });
  const updated = await daemon.waitFor((e) => e.event === 'domain.updated' && e.domain === name, 60_000, 'updated', from);
  assert.ok((updated.live as string[]).includes('memtune.hard_limit'), JSON.stringify(updated));
  assert.equal(updated.pending, []);
  assert.is(memoryLimitInside(name), 128 * 1024 * 1024, 'the cgroup limit inside the container');
  assert.is(liveHardLimitKiB(), 128 * 1024, 'virsh memtune --live');
  assert.match(virsh('dumpxml', name, '--inactive'), /<hard_limit unit='KiB'>131072<\/hard_limit>/);
  assert.is(initPidOf(name), pid, 'restarted: another init pid');
  assert.not.ok(daemon.lines.slice(from).some((l) => l.event === 'domain.started' || l.event === 'domain.stopped'), 'stopped or started again');

  from = daemon.lines.length;
  putSettings('web.ocivirt.json', { image: 'base', memory: '128M', env: { MODE: 'two' }, start: true });
  const pending = await daemon.waitFor((e) => e.event === 'domain.updated' && e.domain === name, 60_000, 'updated with env', from);
  assert.equal(pending.pending, ['os.initenv']);
  const [running, next] = [shimDirOf(), shimDirOf('--inactive')];
  assert.ok(running !== undefined && next !== undefined && running !== next, `the next start's shim directory: ${String(running)} -> ${String(next)}`);
  await daemon.waitFor((e) => e.event === 'sync.completed', 30_000, 'status written', daemon.lines.indexOf(pending));
  const status = JSON.parse(readFileSync(join(dirs.state, 'status.json'), 'utf8')) as { entries: { entry: string; result: string; pendingChange?: string[] }[] };
  const web = status.entries.find((e) => e.entry === 'web.ocivirt.json');
  assert.equal([web?.result, web?.pendingChange], ['pending', ['os.initenv']], JSON.stringify(web));
  assert.is(initPidOf(name), pid);
});

test.run();
