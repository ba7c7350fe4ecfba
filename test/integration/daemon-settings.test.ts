/**
 * Entry settings on the real libvirtd, through the real daemon (watcher included): one image entry
 * marked image-only and three settings entries naming it with different args, env and memory give
 * three running domains, each init with its own args, env and memory cgroup limit as seen inside
 * the container; the image is unpacked once. Bad settings entries (unknown key, wrong type, a bind
 * outside bindAllowList, a missing image entry, a ref the image lacks) each fail alone with one line
 * naming the file and the key, the very line `ocivirt validate` prints, while the others run; a settings file changed in place is a change of its
 * entry (redefined and restarted under updatePolicy restart); a running entry whose settings turn
 * bad fails alone and its domain keeps running. Domains are named ocivirt-test-settings-<pid>-…
 * and removed afterwards, whatever happens.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { repoRoot } from '../helpers/schema.js';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { TEST_PREFIX, cleanupDomains, domainState, makeTempDir, memoryLimitInside, removeTempDir, virsh, waitForInit } from '../helpers/libvirt.js';

const environOf = (pid: number): string[] => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
import { DaemonProcess, stopAndClean, daemonDirs, writeConfig, type DaemonDirs, type LogEvent } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}settings-${process.pid}-`;
let tmp = '';
let dirs: DaemonDirs;
let daemon: DaemonProcess | undefined;
const dom = (stem: string) => `${PREFIX}${stem}`;

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('settings');
  dirs = daemonDirs(tmp);
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

function busyboxImage(into: string): void {
  const b = new ImageBuilder();
  const m = b.image({
    layers: [{ entries: busyboxLayerEntries() }],
    config: { Entrypoint: ['/bin/sleep'], Cmd: ['1000'], Env: ['PATH=/bin', 'FROM_IMAGE=yes'] },
  });
  writeFiles(into, b.layoutFiles([m]));
}

/** Written beside, then renamed in: the watcher sees the file whole. */
function putSettings(name: string, value: unknown): void {
  const staged = join(dirs.staging, name);
  writeFileSync(staged, JSON.stringify(value));
  renameSync(staged, join(dirs.spool, name));
}

/** What the container's own pid 1 sees, read from inside the container. */
/** Bad settings entries and the key each one's error must name. */
const BAD: Record<string, unknown> = {
  typo: { image: 'base', memroy: '64M' },
  wrongtype: { image: 'base', cpus: '2' },
  hostpath: { image: 'base', volumes: ['/etc:/host-etc'] },
  noimage: { image: 'gone.tar' },
  noref: { image: 'base', ref: 'not-there' },
};
const BAD_KEYS: Record<string, [string]> = { typo: ['memroy'], wrongtype: ['cpus'], hostpath: ['volumes[0]'], noimage: ['image'], noref: ['ref'] };

const CONTAINERS = [
  { stem: 'one', seconds: '1001', who: 'one', mib: 64 },
  { stem: 'two', seconds: '1002', who: 'two', mib: 96 },
  { stem: 'three', seconds: '1003', who: 'three', mib: 128 },
];

test('one image, three settings entries: three domains, each with its own args, env and memory limit inside; a bad one fails alone', async () => {
  busyboxImage(join(dirs.staging, 'base'));
  renameSync(join(dirs.staging, 'base'), join(dirs.spool, 'base'));
  putSettings('base.ocivirt.json', { imageOnly: true });
  for (const c of CONTAINERS)
    putSettings(`${c.stem}.ocivirt.json`, { image: 'base', command: [c.seconds], env: { WHO: c.who, FROM_IMAGE: null }, memory: `${c.mib}M`, start: true });
  for (const [name, value] of Object.entries(BAD)) putSettings(`${name}.ocivirt.json`, value);
  const configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, { namePrefix: PREFIX, quietMs: 500, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 2, updatePolicy: 'restart' });
  daemon = await DaemonProcess.start(configFile);

  // each bad entry fails alone, one line naming the file and the key: the line `ocivirt validate` gives
  const validate = spawnSync(join(repoRoot(), 'bin', 'ocivirt'), ['validate', '--config', configFile, dirs.spool], { encoding: 'utf8' });
  assert.is(validate.status, 2, validate.stderr);
  const validated = validate.stderr.trim().split('\n').sort();
  const logged: string[] = [];
  for (const [name, [key]] of Object.entries(BAD_KEYS)) {
    const file = join(dirs.spool, `${name}.ocivirt.json`);
    const bad = await daemon.waitFor((e) => e.event === 'entry.failed' && e.entry === `${name}.ocivirt.json`, 60_000, `${name} fails`);
    assert.ok(String(bad.err).startsWith(`${file}: ${key}: `), String(bad.err));
    logged.push(String(bad.err));
  }
  assert.equal(logged.sort(), validated);
  for (const c of CONTAINERS) await daemon.waitFor((e) => e.event === 'domain.started' && e.domain === dom(c.stem), 120_000, `${c.stem} started`);
  assert.is(daemon.events((e) => e.event === 'image.verified').length, 1, 'the image was verified and unpacked more than once');

  for (const c of CONTAINERS) {
    const name = dom(c.stem);
    // the process (the init shim's child, in the container's pid namespace: waitForInit checks both)
    const { initPid } = await waitForInit(name, ['/bin/sleep', c.seconds]);
    const environ = environOf(initPid);
    assert.ok(environ.includes(`WHO=${c.who}`), `${name}: ${environ.join(' ')}`);
    assert.not.ok(environ.some((e) => e.startsWith('FROM_IMAGE=')), `${name}: FROM_IMAGE not unset`);
    assert.is(memoryLimitInside(name), c.mib * 1024 * 1024, `${name}: memory limit`);
  }
  assert.not.ok(virsh('list', '--all', '--name').includes(dom('base')), 'the image-only entry got a domain');
  for (const name of Object.keys(BAD)) assert.not.ok(virsh('list', '--all', '--name').includes(dom(name)), `${name} got a domain`);
});

test('a settings file changed in place redefines and restarts its domain; bad settings on a running entry leave it running', async () => {
  const d = daemon!;
  const from = d.lines.length;
  putSettings('two.ocivirt.json', { image: 'base', command: ['1222'], env: { WHO: 'two-again' }, memory: '80M', start: true });
  await d.waitFor((e: LogEvent) => e.event === 'domain.started' && e.domain === dom('two'), 60_000, 'two restarted', from);
  const { initPid } = await waitForInit(dom('two'), ['/bin/sleep', '1222']);
  assert.ok(environOf(initPid).includes('WHO=two-again'));
  assert.is(memoryLimitInside(dom('two')), 80 * 1024 * 1024);

  const mark = d.lines.length;
  putSettings('three.ocivirt.json', { image: 'base', cpus: 'lots' });
  const failed = await d.waitFor((e) => e.event === 'entry.failed' && e.entry === 'three.ocivirt.json', 60_000, 'three fails', mark);
  assert.is(failed.err, `${join(dirs.spool, 'three.ocivirt.json')}: cpus: must be a number of CPUs from 0.01 to 1024, got "lots"`);
  for (const c of CONTAINERS) assert.is(domainState(dom(c.stem)), 'running', `${c.stem} stopped`);
  await waitForInit(dom('three'), ['/bin/sleep', '1003']);
});

test.run();
