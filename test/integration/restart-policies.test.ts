/**
 * Exit status and restart policies on the real libvirtd through the real daemon (restartDelayMs
 * 300, restartMaxDelaySec 5 (a slow start under load still counts as a quick run), crashLoopRestarts 3, so it stays short). Settings entries of one
 * busybox image:
 *   three   exits 3, policy no: `status --json` says exited, exitCode 3, restarts 0;
 *   always  exits 3 soon after each start, policy always: restarted after 300, 600, 1200 ms (the
 *           start times show the growing gaps), then crash-looping (event) at the 5 s cap;
 *   onfail  exits 1, on-failure:2: restarted twice, then it gives up (event, state gave-up);
 *   held    runs, policy always: `virsh destroy` is respected (held, stays stopped across a pass),
 *           `ocivirt start` starts it, `ocivirt stop` stops it for good, `virsh shutdown --mode
 *           signal` too (the shim records the signal libvirt sent).
 * Domains are named ocivirt-test-restart-<pid>-… and removed afterwards, whatever happens.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { busyboxLayerEntries, ImageBuilder, writeFiles } from '../image/fixtures.js';
import { TEST_PREFIX, cleanupDomains, domainState, makeTempDir, removeTempDir, virsh } from '../helpers/libvirt.js';
import { repoRoot } from '../helpers/schema.js';
import { DaemonProcess, stopAndClean, daemonDirs, putSpoolJson, writeConfig, type DaemonDirs, type LogEvent } from '../daemon/harness.js';

const PREFIX = `${TEST_PREFIX}restart-${process.pid}-`;
let tmp = '';
let dirs: DaemonDirs;
let configFile = '';
let daemon: DaemonProcess | undefined;
const dom = (stem: string) => `${PREFIX}${stem}`;
const bin = join(repoRoot(), 'bin', 'ocivirt');

test.before(() => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('restart');
  dirs = daemonDirs(tmp);
  configFile = join(tmp, 'ocivirt.json');
});

test.after(() => stopAndClean(daemon, PREFIX, tmp));

interface Shown {
  entry: string;
  domain: string;
  state: string;
  exitCode: number | null;
  signal: number | null;
  restarts: number;
  since: string | null;
}

const ocivirt = (...args: string[]) => execFileSync(bin, [...args, '--state', dirs.state], { encoding: 'utf8', env: { ...process.env, OCIVIRT_CONFIG: configFile } });
const statusJson = (): Shown[] => (JSON.parse(ocivirt('status', '--json')) as { entries: Shown[] }).entries;
const shown = (stem: string) => statusJson().find((e) => e.domain === dom(stem));

/** The daemon rewrites the status file after each change: waits until `stem` is in `state`. */
async function untilState(stem: string, state: string, ms = 20_000): Promise<Shown> {
  const end = Date.now() + ms;
  for (;;) {
    const status = JSON.parse(readFileSync(join(dirs.state, 'status.json'), 'utf8')) as { entries: Shown[] };
    const e = status.entries.find((x) => x.domain === dom(stem));
    if (e?.state === state) return e;
    if (Date.now() > end) throw new Error(`${stem} not ${state} after ${ms} ms: ${JSON.stringify(e)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const of = (event: string, stem: string) => (e: LogEvent) => e.event === event && e.domain === dom(stem);

/** A full pass (SIGHUP: reload, then everything looked at again) has completed since now. */
async function fullPass(d: DaemonProcess): Promise<void> {
  const from = d.lines.length;
  d.signal('SIGHUP');
  await d.waitFor((e) => e.event === 'sync.completed' && e.scope === 'all', 30_000, 'a full pass', from);
}

test('exit 3 recorded and shown; always restarts with backoff into a crash loop; on-failure:2 gives up; operators\' stops respected', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: busyboxLayerEntries() }], config: { Entrypoint: ['/bin/sleep'], Cmd: ['1000'], Env: ['PATH=/bin'] } });
  writeFiles(join(dirs.staging, 'base'), b.layoutFiles([m]));
  renameSync(join(dirs.staging, 'base'), join(dirs.spool, 'base'));
  putSpoolJson(dirs, 'base.ocivirt.json', { imageOnly: true });
  const sh = (script: string) => ['/bin/sh', '-c', script];
  putSpoolJson(dirs, 'three.ocivirt.json', { image: 'base', entrypoint: sh('sleep 0.2; exit 3'), restart: 'no', start: true });
  putSpoolJson(dirs, 'always.ocivirt.json', { image: 'base', entrypoint: sh('sleep 0.2; exit 3'), restart: 'always', start: true });
  putSpoolJson(dirs, 'onfail.ocivirt.json', { image: 'base', entrypoint: sh('sleep 0.2; exit 1'), restart: 'on-failure:2', start: true });
  putSpoolJson(dirs, 'held.ocivirt.json', { image: 'base', entrypoint: sh('while :; do sleep 1; done'), restart: 'always', start: true });
  writeConfig(configFile, dirs, {
    namePrefix: PREFIX, quietMs: 300, resyncIntervalSec: 3600, exportCheckIntervalSec: 3600, stopTimeoutSec: 5,
    restartDelayMs: 300, restartMaxDelaySec: 5, crashLoopRestarts: 3,
  });
  const d = (daemon = await DaemonProcess.start(configFile));

  // exit 3, policy no: recorded, shown, left alone
  const exited = await d.waitFor(of('domain.exited', 'three'), 120_000, 'three exited');
  assert.equal([exited.exitCode, exited.by], [3, 'process'], JSON.stringify(exited));
  await untilState('three', 'exited');
  const three = shown('three')!;
  assert.equal([three.state, three.exitCode, three.restarts], ['exited', 3, 0], JSON.stringify(three));
  assert.ok(three.since !== null && Date.parse(three.since) > Date.now() - 120_000, String(three.since));

  // always: three restarts with doubling delays, then the crash loop at the cap
  const loop = await d.waitFor(of('domain.crashlooping', 'always'), 60_000, 'always crash-looping');
  assert.is(loop.delayMs, 5000);
  const exits = d.events(of('domain.exited', 'always'));
  assert.equal(exits.slice(0, 4).map((e) => e.restartInMs), [300, 600, 1200, 5000], JSON.stringify(exits));
  const starts = d.events((e) => of('domain.started', 'always')(e) && e.restarts !== undefined);
  assert.equal(starts.slice(0, 3).map((e) => e.restarts), [1, 2, 3]);
  // each restart came its delay after the exit before it (the log lines' ISO `time`)
  for (let i = 0; i < 3; i++) {
    const gap = Date.parse(String(starts[i]!.time)) - Date.parse(String(exits[i]!.time));
    assert.ok(gap >= (exits[i]!.restartInMs as number) - 50, `restart ${i + 1}: ${gap} ms after its exit`);
  }
  await untilState('always', 'crash-looping');
  assert.equal(shown('always')!.exitCode, 3);

  // on-failure:2: two restarts, then it gives up
  const gaveUp = await d.waitFor(of('domain.gaveup', 'onfail'), 60_000, 'onfail gave up');
  assert.equal([gaveUp.restarts, gaveUp.policy, gaveUp.exitCode], [2, 'on-failure:2', 1]);
  const onfail = await untilState('onfail', 'gave-up');
  assert.equal([onfail.exitCode, onfail.restarts], [1, 2]);
  assert.is(domainState(dom('onfail')), 'shut off');

  // an operator's virsh destroy: held, not restarted (a full pass later it is still stopped)
  await untilState('held', 'running');
  let from = d.lines.length;
  virsh('destroy', dom('held'));
  await d.waitFor(of('domain.held', 'held'), 20_000, 'held after virsh destroy', from);
  const destroyed = await d.waitFor(of('domain.exited', 'held'), 20_000, 'held exited', from);
  assert.equal([destroyed.by, destroyed.forced], ['operator', true]);
  await fullPass(d);
  assert.is(domainState(dom('held')), 'shut off');
  assert.is(shown('held')!.state, 'stopped');

  // ocivirt start, then ocivirt stop: stopped for good
  assert.match(ocivirt('start', 'held'), /started/);
  await untilState('held', 'running');
  from = d.lines.length;
  assert.match(ocivirt('stop', 'held'), /stopped by SIGTERM/);
  await d.waitFor(of('domain.exited', 'held'), 20_000, 'held exited after ocivirt stop', from);
  await fullPass(d);
  assert.is(domainState(dom('held')), 'shut off');
  assert.not.ok(d.events(of('domain.started', 'held'), from).length, 'restarted after ocivirt stop');

  // virsh shutdown: libvirt's SIGTERM, recorded by the shim: held as well. (A plain `virsh shutdown`
  // first looks for an initctl FIFO in the container; libvirt 9.0 then sends no signal at all
  // when there is none, so it does nothing: `--mode signal` is the shutdown that stops it.)
  ocivirt('start', 'held');
  await untilState('held', 'running');
  from = d.lines.length;
  virsh('shutdown', '--mode', 'signal', dom('held'));
  const shut = await d.waitFor(of('domain.held', 'held'), 30_000, 'held after virsh shutdown', from).catch((e: Error) => {
    const run = join(dirs.state, 'containers', dom('held'), 'run');
    const status = (() => { try { return readFileSync(join(run, 'status'), 'utf8'); } catch (x) { return String(x); } })();
    throw new Error(`${e.message}; state ${domainState(dom('held'))}; status ${JSON.stringify(status)}; events ${JSON.stringify(d.events((x) => x.domain === dom('held'), from))}`);
  });
  assert.match(String(shut.reason), /signal 15/);
  await fullPass(d);
  assert.is(domainState(dom('held')), 'shut off');
  assert.not.ok(d.events(of('domain.started', 'held'), from).length, 'restarted after virsh shutdown');
  const table = ocivirt('status');
  assert.match(table, new RegExp(`^three\\.ocivirt\\.json\\s+\\S+\\s+\\S+\\s+ok\\s+exited\\s+3\\s+0\\s`, 'm'), table);
});

test.run();
