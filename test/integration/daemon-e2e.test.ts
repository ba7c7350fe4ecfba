/**
 * The daemon end to end on the real libvirtd, one daemon process for the whole file: entries
 * renamed in, copied in slowly (never defined half-copied), modified, removed, a burst of 200,
 * an image layout, the trust-boundary refusals (each alone, none stopping the others), export
 * after `virsh memtune --config`, `ocivirt status`, SIGHUP (invalid and valid), and SIGTERM
 * (exit 0, the running container untouched). Every domain is named ocivirt-test-d<pid>-… and
 * removed afterwards, whatever happens.
 */
import { withoutShim } from '../../src/shim/domain.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { execFileSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ImageBuilder, baseLayerEntries, writeFiles } from '../image/fixtures.js';
import { assertRuntimeSchemaValid, repoRoot } from '../helpers/schema.js';
import {
  TEST_PREFIX,
  buildBusyboxRootfs,
  cleanupDomains,
  domainState,
  isDefined,
  listDomainNames,
  makeTempDir,
  removeTempDir,
  virsh,
  waitForInit,
} from '../helpers/libvirt.js';
import { DaemonProcess, stopAndClean, bundleConfig, busyboxCopy, daemonDirs, writeConfig, writeSmallBundle, type DaemonDirs, type LogEvent } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}d${process.pid}-`;
const QUIET_MS = 800;
const BURST = 200;
let tmp = '';
let dirs: DaemonDirs;
let busybox = '';
let configFile = '';
let daemon: DaemonProcess | undefined;
const dom = (entry: string) => `${PREFIX}${entry}`;
const is = (event: string, entry: string) => (e: LogEvent) => e.event === event && e.entry === entry;

/** Builds an entry in staging and renames it into the spool (appears whole). */
function dropSmall(entry: string, config = bundleConfig(['/bin/busybox', 'sleep', '1000'])): void {
  writeSmallBundle(join(dirs.staging, entry), busybox, config);
  renameSync(join(dirs.staging, entry), join(dirs.spool, entry));
}

function baseSettings(extra: Record<string, unknown> = {}) {
  return {
    namePrefix: PREFIX,
    quietMs: QUIET_MS,
    resyncIntervalSec: 3600,
    exportCheckIntervalSec: 3600,
    stopTimeoutSec: 2,
    shutdownTimeoutSec: 15,
    concurrency: 8,
    ...extra,
  };
}

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('daemon');
  dirs = daemonDirs(join(tmp, 'd'));
  busybox = busyboxCopy(tmp);
  configFile = join(tmp, 'ocivirt.json');
  writeConfig(configFile, dirs, baseSettings());
  daemon = await DaemonProcess.start(configFile);
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

test('an entry renamed in is defined and, with the start annotation, started: its init runs', async () => {
  const d = daemon!;
  const bundle = join(dirs.staging, 'web');
  buildBusyboxRootfs(join(bundle, 'rootfs'));
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(bundleConfig(['/bin/sleep', '1000'], { annotations: { 'org.ocivirt.start': 'true' } })));
  renameSync(bundle, join(dirs.spool, 'web'));
  await d.waitFor(is('entry.detected', 'web'), 15_000, 'entry.detected web');
  const defined = await d.waitForEntry('domain.defined', 'web', 15_000);
  assert.is(defined.domain, dom('web'));
  assert.match(String(defined.digest), /^sha256:[0-9a-f]{64}$/);
  assert.type(defined.durationMs, 'number');
  await d.waitFor(is('domain.started', 'web'), 15_000, 'domain.started web');
  await waitForInit(dom('web'), ['/bin/sleep', '1000']);
});

test('a bundle copied in place slowly is defined only after it has been quiet, never half-copied', async () => {
  const d = daemon!;
  const from = d.lines.length;
  const bundle = join(dirs.spool, 'slow');
  mkdirSync(join(bundle, 'rootfs', 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(bundle, 'rootfs', 'bin', 'busybox')); // its init: an entry without one is refused
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(bundleConfig(['/bin/busybox', 'sleep', '1000'])));
  // the rootfs keeps arriving, with pauses shorter than the quiet time (nothing slow in the loop:
  // a pause as long as the quiet time would rightly count as the copy having finished)
  let last = Date.now();
  for (let i = 0; i < 6; i++) {
    await sleep(QUIET_MS / 4);
    writeFileSync(join(bundle, 'rootfs', 'bin', `part${i}`), Buffer.alloc(4096, i));
    const pause = Date.now() - last;
    last = Date.now();
    assert.ok(pause < QUIET_MS, `premise: the pause before file ${i} (${pause} ms) is shorter than the quiet time`);
    assert.is(d.events((e) => e.entry === 'slow', from).length, 0, `an event about the entry while file ${i} was being copied`);
  }
  assert.not.ok(isDefined(dom('slow')), 'defined while it was still being copied');
  await d.waitForEntry('domain.defined', 'slow', 15_000, from);
  assert.ok(isDefined(dom('slow')));
});

test('a changed entry redefines its domain; running, a process change is pending until the next start (updatePolicy live: nothing to set live)', async () => {
  const d = daemon!;
  const cfg = bundleConfig(['/bin/sleep', '2000'], { annotations: { 'org.ocivirt.start': 'true' } });
  writeFileSync(join(dirs.staging, 'web-config.json'), JSON.stringify(cfg));
  renameSync(join(dirs.staging, 'web-config.json'), join(dirs.spool, 'web', 'config.json'));
  const redefined = await d.waitForEntry('domain.redefined', 'web', 15_000);
  assert.is(redefined.domain, dom('web'));
  const updated = await d.waitFor(is('domain.updated', 'web'), 15_000, 'domain.updated web');
  assert.equal(updated.live, []);
  assert.ok(Array.isArray(updated.pending) && updated.pending.length > 0, JSON.stringify(updated));
  assert.equal(withoutShim(parseDomainXml(virsh('dumpxml', '--inactive', dom('web')))).os.initargs, ['2000'], 'the process the init shim runs');
  assert.is(domainState(dom('web')), 'running', 'a pending change leaves it running');
});

test('a config.json rewritten in place is never read half-written; the domain keeps its definition until it is whole', async () => {
  const d = daemon!;
  const from = d.lines.length;
  const text = JSON.stringify(bundleConfig(['/bin/sleep', '3000'], { annotations: { 'org.ocivirt.start': 'true' } }));
  const fd = openSync(join(dirs.spool, 'web', 'config.json'), 'w');
  try {
    writeSync(fd, text.slice(0, text.length / 2));
    for (let i = 0; i < 3; i++) {
      await sleep(QUIET_MS / 3);
      assert.is(d.events((e) => e.entry === 'web' && (e.event === 'entry.failed' || e.event === 'domain.redefined'), from).length, 0, 'read half-written');
    }
    writeSync(fd, text.slice(text.length / 2));
  } finally {
    closeSync(fd);
  }
  await d.waitForEntry('domain.redefined', 'web', 15_000, from);
  assert.equal(withoutShim(parseDomainXml(virsh('dumpxml', '--inactive', dom('web')))).os.initargs, ['3000'], 'the process the init shim runs');
  assert.is(d.events((e) => e.entry === 'web' && e.event === 'entry.failed', from).length, 0);
});

test('a removed entry is stopped and undefined', async () => {
  const d = daemon!;
  rmSync(join(dirs.spool, 'slow'), { recursive: true });
  await d.waitFor(is('domain.undefined', 'slow'), 15_000, 'domain.undefined slow');
  assert.not.ok(isDefined(dom('slow')));
});

test(`a burst of ${BURST} entries renamed in: every domain defined exactly once; removed, every one undefined`, async () => {
  const d = daemon!;
  const names = Array.from({ length: BURST }, (_, i) => `burst-${i}`);
  for (const n of names) writeSmallBundle(join(dirs.staging, n), busybox, bundleConfig(['/bin/busybox', 'sleep', '1000']));
  for (const n of names) renameSync(join(dirs.staging, n), join(dirs.spool, n));
  const isBurst = (ev: string) => (e: LogEvent) => e.event === ev && String(e.entry).startsWith('burst-');
  await d.waitForCount((e) => isBurst('domain.defined')(e) || isBurst('entry.failed')(e), BURST, 120_000, 'domain.defined');
  assert.equal(d.events(isBurst('entry.failed')).map((e) => e.err), [], 'no burst entry failed');
  await sleep(1000);
  const defined = d.events(isBurst('domain.defined')).map((e) => String(e.entry));
  assert.is(defined.length, BURST, 'no entry defined twice');
  assert.equal(new Set(defined).size, BURST);
  const present = new Set(listDomainNames());
  for (const n of names) assert.ok(present.has(dom(n)), `${dom(n)} defined`);
  assert.is(d.events(isBurst('entry.failed')).length, 0);

  for (const n of names) rmSync(join(dirs.spool, n), { recursive: true });
  await d.waitForCount(isBurst('domain.undefined'), BURST, 120_000, 'domain.undefined');
  const left = listDomainNames().filter((n) => n.startsWith(`${PREFIX}burst-`));
  assert.equal(left, []);
});

test('trust boundaries: a symlink entry, root.path "/", a bind of "/" are each refused; the good entry beside them is defined', async () => {
  const d = daemon!;
  const from = d.lines.length;
  // the symlink points at a perfectly good bundle: the link itself is refused
  writeSmallBundle(join(tmp, 'elsewhere'), busybox, bundleConfig(['/bin/busybox', 'sleep', '1']));
  writeSmallBundle(join(dirs.staging, 'rootslash'), busybox, { ...bundleConfig(['/bin/busybox', 'sleep', '1']), root: { path: '/' } });
  writeSmallBundle(
    join(dirs.staging, 'bindroot'),
    busybox,
    bundleConfig(['/bin/busybox', 'sleep', '1'], { mounts: [{ destination: '/host', type: 'bind', source: '/', options: ['rbind'] }] }),
  );
  writeSmallBundle(join(dirs.staging, 'good'), busybox, bundleConfig(['/bin/busybox', 'sleep', '1000']));
  symlinkSync(join(tmp, 'elsewhere'), join(dirs.spool, 'linked'));
  for (const n of ['rootslash', 'bindroot', 'good']) renameSync(join(dirs.staging, n), join(dirs.spool, n));

  const linked = await d.waitFor(is('entry.failed', 'linked'), 15_000, 'entry.failed linked', from);
  assert.match(String(linked.err), /symlink/);
  const rootslash = await d.waitFor(is('entry.failed', 'rootslash'), 15_000, 'entry.failed rootslash', from);
  assert.match(String(rootslash.err), /root\.path.*outside the bundle/);
  const bindroot = await d.waitFor(is('entry.failed', 'bindroot'), 15_000, 'entry.failed bindroot', from);
  assert.match(String(bindroot.err), /mounts\[0\]\.source.*outside the bundle and the allowed mount sources/);
  await d.waitForEntry('domain.defined', 'good', 15_000, from);
  for (const n of ['linked', 'rootslash', 'bindroot']) assert.not.ok(isDefined(dom(n)), `${n} not defined`);

  // ocivirt status shows each of them with its error
  const bin = join(repoRoot(), 'bin', 'ocivirt');
  const table = execFileSync(bin, ['status', '--state', dirs.state], { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: configFile } });
  for (const n of ['linked', 'rootslash', 'bindroot']) assert.match(table, new RegExp(`^${n}\\s+\\S+\\s+fail\\s+failed\\s+.+$`, 'm'));
  assert.match(table, /^good\s+\S+\s+create\s+ok/m);
  assert.match(table, /^web\s+/m);
  for (const n of ['linked', 'rootslash', 'bindroot']) rmSync(join(dirs.spool, n), { recursive: true });
});

test('two entries for one domain name: the newcomer is refused by name, the existing domain untouched', async () => {
  const d = daemon!;
  dropSmall('twin');
  await d.waitForEntry('domain.defined', 'twin', 15_000);
  const before = virsh('dumpxml', '--inactive', dom('twin'));
  const from = d.lines.length;
  dropSmall('Twin', bundleConfig(['/bin/busybox', 'sleep', '5']));
  const failed = await d.waitForEntry('entry.failed', 'Twin', 15_000, from);
  assert.match(String(failed.err), /name collision/, String(failed.err));
  assert.match(String(failed.err), /"twin"/, String(failed.err));
  await sleep(500);
  assert.is(virsh('dumpxml', '--inactive', dom('twin')), before, 'the existing domain is not changed');
  assert.is(d.events((e) => e.entry === 'twin' && e.event === 'domain.redefined').length, 0);
  rmSync(join(dirs.spool, 'Twin'), { recursive: true });
});

test('a config with fields neither libvirt-lxc nor the init shim enforces: defined, and convert.warning names them', async () => {
  const d = daemon!;
  const cfg = bundleConfig(['/bin/busybox', 'sleep', '1000']);
  // rlimits are the shim's (no warning); a kernel.* sysctl is not: /proc/sys is read-only inside
  (cfg.process as Record<string, unknown>).rlimits = [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }];
  cfg.linux = { ...(cfg.linux as Record<string, unknown>), sysctl: { 'kernel.shmmax': '1' } };
  writeSmallBundle(join(dirs.staging, 'warned'), busybox, cfg);
  await sleep(50);
  renameSync(join(dirs.staging, 'warned'), join(dirs.spool, 'warned'));
  await d.waitForEntry('domain.defined', 'warned', 15_000);
  const warning = await d.waitFor(is('convert.warning', 'warned'), 15_000, 'convert.warning warned');
  assert.is(warning.domain, dom('warned'));
  assert.ok((warning.warnings as string[]).some((w) => w.startsWith('linux.sysctl["kernel.shmmax"]')), JSON.stringify(warning.warnings));
  assert.not.ok((warning.warnings as string[]).some((w) => w.startsWith('process.rlimits')), JSON.stringify(warning.warnings));
});

test('an image layout entry is unpacked into the state directory and defined', async () => {
  const d = daemon!;
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }], config: { Cmd: ['/bin/sh'] } });
  writeFiles(join(dirs.staging, 'img'), b.layoutFiles([m]));
  renameSync(join(dirs.staging, 'img'), join(dirs.spool, 'img'));
  const unpacked = await d.waitFor((e) => e.event === 'image.unpacked' && String(e.entry).endsWith('/img'), 30_000, 'image.unpacked');
  assert.is(unpacked.digest, m.digest);
  const defined = await d.waitForEntry('domain.defined', 'img', 30_000);
  assert.is(defined.domain, dom('img'));
  assert.match(virsh('dumpxml', '--inactive', dom('img')), join(dirs.state, 'bundles', dom('img')));
});

test('virsh memtune --config on a managed domain: the export is written and valid', async () => {
  const d = daemon!;
  const from = d.lines.length;
  virsh('memtune', dom('good'), '--hard-limit', '262144', '--config');
  const written = await d.waitFor((e) => e.event === 'export.written' && e.domain === dom('good'), 10_000, 'export.written good', from);
  const config = JSON.parse(readFileSync(String(written.path), 'utf8'));
  assertRuntimeSchemaValid(config);
  assert.is(config.linux.resources.memory.limit, 262144 * 1024);
  // the domain runs from the bundle's copy in the state directory (never the spool): the export names it
  assert.match(config.root.path, new RegExp(`^${join(dirs.state, 'bundles', dom('good'))}/[0-9a-f]{16}/rootfs$`));
});

test('SIGHUP: an invalid file is refused and the daemon keeps running; a valid one is applied', async () => {
  const d = daemon!;
  const from = d.lines.length;
  writeFileSync(configFile, JSON.stringify({ spoolDir: dirs.spool, updatePolicy: 'whenever' }));
  d.signal('SIGHUP');
  const invalid = await d.waitFor((e) => e.event === 'config.invalid', 10_000, 'config.invalid', from);
  assert.match(String(invalid.err), /updatePolicy/);
  assert.match(String(invalid.err), new RegExp(configFile.replace(/[.]/g, '\\.')));

  writeConfig(configFile, dirs, baseSettings({ removePolicy: 'keep' }));
  d.signal('SIGHUP');
  await d.waitFor((e) => e.event === 'daemon.reloaded', 10_000, 'daemon.reloaded', from);
  // remove policy now 'keep': removing an entry leaves its domain
  const at = d.lines.length;
  rmSync(join(dirs.spool, 'good'), { recursive: true });
  await d.waitFor((e) => e.event === 'sync.completed' && Array.isArray(e.scope) && (e.scope as string[]).includes('good'), 15_000, 'pass over good', at);
  assert.ok(isDefined(dom('good')), 'kept');
  assert.is(d.events((e) => e.event === 'domain.undefined' && e.entry === 'good').length, 0);
});

test('SIGTERM: exits 0, the running container keeps running', async () => {
  const d = daemon!;
  const { code } = await d.stop();
  assert.is(code, 0, d.stderr);
  assert.ok(d.events((e) => e.event === 'daemon.stopping').length >= 1);
  assert.ok(d.events((e) => e.event === 'daemon.stopped').length === 1);
  assert.is(domainState(dom('web')), 'running');
  await waitForInit(dom('web'), ['/bin/sleep', '1000']);
  // the events this run emitted include the contract's transitions
  const seen = new Set(d.events().map((e) => e.event));
  for (const ev of ['entry.detected', 'entry.failed', 'image.unpacked', 'domain.defined', 'domain.redefined', 'domain.undefined', 'domain.started', 'domain.updated', 'export.written', 'libvirt.connected'])
    assert.ok(seen.has(ev), `${ev} emitted`);
});

test.run();
