/**
 * Restart policies on the in-memory libvirt with a fake clock (no real waits): the exit status is
 * read from the shim's status file (written here as the shim writes it), `always` restarts with a
 * doubling backoff, quick exits in a row make a crash loop (event, delay at the cap), a long run
 * resets the backoff, `on-failure:N` gives up after N, `on-failure` and `no` leave an exit alone;
 * stops from outside (virsh shutdown: outside-signal; virsh destroy; ocivirt stop) and ocivirt's own
 * stops are never undone; the record survives a daemon restart; exits nobody heard are found by the
 * pass; `status` (runtime.ts) tells each state. The status file is the container's: hostile forms.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RestartSupervisor } from '../../src/daemon/restarts.js';
import { DomainLocks } from '../../src/reconcile/apply.js';
import { parseProcessStatus, readProcessStatus } from '../../src/reconcile/exit-status.js';
import { operatorStop, operatorStopsOf } from '../../src/reconcile/operator.js';
import { afterExit, parseRestartPolicy, restartRecordsOf, type RestartPolicy } from '../../src/reconcile/restarts.js';
import { runtimeOf } from '../../src/reconcile/runtime.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { containerDir } from '../../src/shim/domain.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { syncedWeb } from '../helpers/synced-entry.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-restarts-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

const BACKOFF = { baseMs: 1000, maxMs: 60_000, crashLoopAfter: 3 };
let serial = 0;

async function setup(restart?: string, defaultPolicy: RestartPolicy = { mode: 'no' }) {
  const { spool, stateDir, opts, port, log, events } = await syncedWeb(join(tmp, `t${serial++}`), restart !== undefined ? { restart } : undefined);
  const clock = new FakeClock();
  const locks = new DomainLocks();
  let mtime = 1_700_000_000;
  const make = () =>
    new RestartSupervisor({ port, stateDir, log, clock, locks, defaults: () => ({ policy: defaultPolicy, backoff: BACKOFF }), entryOf: (d) => (d === 'web' ? 'web' : undefined), changed: () => undefined });
  let sup = make();
  // the daemon's wiring of lifecycle events (daemon.ts)
  port.watch((e) => {
    if (e.type !== 'lifecycle') return;
    if (e.kind === 'stopped') void sup.exited(e.name, e.detail);
    if (e.kind === 'started') void sup.started(e.name);
  });
  const d = port.domains.get('web')!;
  const statusFile = join(containerDir(stateDir, 'web'), 'run', 'status');
  /** The shim writes the status, then the domain shuts off (libvirt-lxc says "shutdown"). */
  const processEnds = async (text: string, detail = 'shutdown', emit = true) => {
    writeFileSync(statusFile, text);
    utimesSync(statusFile, ++mtime, mtime);
    d.state = 'shutoff';
    if (emit) port.emit({ type: 'lifecycle', name: 'web', uuid: d.uuid, kind: 'stopped', detail });
    await settle();
    await sup.idle();
  };
  const starts = () => port.calls.filter((c) => c.method === 'start').length;
  /** The policy's start number `n` (counted from setup's) has been made and logged. */
  const s0 = port.calls.filter((c) => c.method === 'start').length;
  const restarted = async (n: number) => {
    await port.waitFor(() => starts() === s0 + n);
    await settle();
    await sup.idle();
  };
  const named = (event: string) => events.filter((e) => e.event === event);
  const restartSupervisor = () => {
    sup.stop();
    sup = make();
    return sup;
  };
  return { port, opts, stateDir, clock, locks, d, events, named, starts, restarted, processEnds, statusFile, sup: () => sup, restartSupervisor, log };
}

const run = (stateDir: string, port: FakeLibvirt) => runtimeOf(port, stateDir, 'web', false);

test('the status file: the shim\'s forms, anything else unknown', () => {
  assert.equal(parseProcessStatus('exited 3\n'), { state: { kind: 'exited', code: 3 } });
  assert.equal(parseProcessStatus('signaled 9\n'), { state: { kind: 'signaled', signal: 9 } });
  assert.equal(parseProcessStatus('exited 143\noutside-signal 15\n'), { state: { kind: 'exited', code: 143 }, outsideSignal: 15 });
  assert.equal(parseProcessStatus('running\n'), { state: { kind: 'running' } });
  assert.equal(parseProcessStatus('setup-failed\n'), { state: { kind: 'setup-failed' } });
  for (const bad of ['exited 300\n', 'exited 3', 'exited 3\nexited 4\n', 'signaled 0\n', 'exited -1\n', 'EXITED 3\n', 'exited 3\noutside-signal 99\n', ''])
    assert.equal(parseProcessStatus(bad), { state: { kind: 'unknown' } }, JSON.stringify(bad));
});

test('a hostile status file: a symlink is not followed, a FIFO not opened for reading, a big file not read', async () => {
  const { stateDir, statusFile } = await setup();
  const secret = join(tmp, 'secret');
  writeFileSync(secret, 'exited 7\n');
  symlinkSync(secret, statusFile);
  assert.is(await readProcessStatus(stateDir, 'web'), undefined);
  rmSync(statusFile);
  execFileSync('mkfifo', [statusFile]);
  assert.is(await readProcessStatus(stateDir, 'web'), undefined, 'a FIFO (a read would block the daemon)');
  rmSync(statusFile);
  writeFileSync(statusFile, 'exited 3\n' + ' '.repeat(1 << 20));
  assert.equal((await readProcessStatus(stateDir, 'web'))!.state, { kind: 'unknown' });
});

test('setup-failed: the shim\'s reason is read from the container log', async () => {
  const { stateDir, port, processEnds } = await setup();
  const logDir = join(containerDir(stateDir, 'web'), 'run', 'log');
  mkdirSync(logDir, { recursive: true });
  writeFileSync(join(logDir, 'current'), '2026-11-30T00:50:23.123456789Z stdout F hello\n2026-11-30T00:50:23.123456790Z stderr F ocivirt-init: cwd /nope: No such file or directory\n');
  await processEnds('setup-failed\n');
  const r = await run(stateDir, port);
  assert.is(r.state, 'setup-failed');
  assert.is(r.stateReason, 'ocivirt-init: cwd /nope: No such file or directory');
  assert.is(r.exitCode, null);
});

test('exit 3 under policy no: exitCode 3, state exited, not restarted', async () => {
  const { stateDir, port, processEnds, named, starts, clock, opts } = await setup();
  const before = starts();
  await processEnds('exited 3\n');
  const r = await run(stateDir, port);
  assert.equal([r.state, r.exitCode, r.restarts], ['exited', 3, 0]);
  assert.ok(r.since);
  // the status file (status --json) has them under these names; a pass does not start it again
  await syncOnce(port, opts);
  const shown = (JSON.parse(readFileSync(join(stateDir, 'status.json'), 'utf8')) as { entries: Record<string, unknown>[] }).entries;
  assert.equal(shown.map((e) => [e.entry, e.domain, e.state, e.exitCode, e.signal, e.restarts, typeof e.since]), [['web', 'web', 'exited', 3, null, 0, 'string']]);
  assert.equal(named('domain.exited').map((e) => [e.exitCode, e.by]), [[3, 'process']]);
  await clock.advance(10 * 60_000);
  assert.is(starts(), before);
});

test('always: restarted after 1 s, 2 s, 4 s (quick exits double the delay); then crash-looping at the cap; a long run resets', async () => {
  const { stateDir, port, processEnds, named, starts, restarted, clock, d } = await setup('always');
  const s0 = starts();
  const delays: number[] = [];
  for (let i = 1; i <= 3; i++) {
    await processEnds('exited 3\n');
    const r = await run(stateDir, port);
    assert.equal([r.state, r.exitCode, r.restarts], ['restarting', 3, i - 1]);
    delays.push(clock.nextIn()!);
    await clock.advance(clock.nextIn()! - 1);
    assert.is(starts(), s0 + i - 1, 'started before its delay');
    await clock.advance(1);
    await restarted(i);
    assert.is(d.state, 'running');
    await clock.advance(100); // a quick run
  }
  assert.equal(delays, [1000, 2000, 4000]);
  assert.equal(named('domain.started').slice(-3).map((e) => e.restarts), [1, 2, 3]);
  await processEnds('signaled 9\n');
  const looping = await run(stateDir, port);
  assert.equal([looping.state, looping.signal, looping.exitCode, looping.restarts], ['crash-looping', 9, null, 3]);
  assert.is(clock.nextIn(), 60_000);
  assert.equal(named('domain.crashlooping').length, 1);
  await clock.advance(60_000);
  await restarted(4);
  assert.is(d.state, 'running');
  await clock.advance(60_000); // ran as long as the cap: the backoff starts over
  await processEnds('exited 1\n');
  assert.is(clock.nextIn(), 1000);
  assert.is((await run(stateDir, port)).state, 'restarting');
});

test('on-failure:2 gives up after two restarts (event says so); on-failure leaves exit 0 alone', async () => {
  const { stateDir, port, processEnds, named, restarted, clock } = await setup('on-failure:2');
  for (let i = 0; i < 2; i++) {
    await processEnds('exited 1\n');
    await clock.advance(clock.nextIn()!);
    await restarted(i + 1);
  }
  await processEnds('exited 1\n');
  assert.is(clock.nextIn(), undefined, 'a third restart armed');
  const r = await run(stateDir, port);
  assert.equal([r.state, r.exitCode, r.restarts], ['gave-up', 1, 2]);
  assert.equal(named('domain.gaveup').map((e) => [e.restarts, e.policy]), [[2, 'on-failure:2']]);

  const other = await setup('on-failure');
  await other.processEnds('exited 0\n');
  assert.is(other.clock.nextIn(), undefined);
  assert.equal((await run(other.stateDir, other.port)).state, 'exited');
});

test('the daemon\'s default policy applies to an entry without its own; the entry\'s wins', async () => {
  const a = await setup(undefined, { mode: 'always' });
  await a.processEnds('exited 2\n');
  assert.is(a.clock.nextIn(), 1000);
  const b = await setup('no', { mode: 'always' });
  await b.processEnds('exited 2\n');
  assert.is(b.clock.nextIn(), undefined);
});

test('stops from outside are respected: virsh shutdown (outside-signal) is held, virsh destroy and ocivirt stop left stopped', async () => {
  const t = await setup('always');
  await t.processEnds('exited 143\noutside-signal 15\n');
  assert.is(t.clock.nextIn(), undefined, 'restart armed after a virsh shutdown');
  assert.ok(await operatorStopsOf(t.stateDir).has('web'));
  assert.equal(t.named('domain.held').length, 1);
  assert.equal(t.named('domain.exited').map((e) => e.by), ['operator']);
  const r = await run(t.stateDir, t.port);
  assert.equal([r.state, r.exitCode], ['stopped', 143]);
  assert.match(r.stateReason!, /operator/);

  // virsh destroy: the shim never wrote an exit (status stays "running"); libvirt says destroyed
  const u = await setup('always');
  writeFileSync(u.statusFile, 'running\n');
  await u.port.destroy('web');
  await settle();
  await u.sup().idle();
  assert.is(u.clock.nextIn(), undefined);
  assert.equal((await run(u.stateDir, u.port)).state, 'stopped');

  // ocivirt stop: marked first; the process's end (signaled by the stop) is not restarted
  const v = await setup('always');
  v.d.stopsOn = ['SIGTERM'];
  writeFileSync(v.statusFile, 'exited 0\noutside-signal 15\n');
  await operatorStop(v.port, 'web', { stateDir: v.stateDir, log: v.log, defaultTimeoutMs: 1000 });
  await settle();
  await v.sup().idle();
  assert.is(v.clock.nextIn(), undefined);
  assert.equal((await run(v.stateDir, v.port)).state, 'stopped');
});

test('ocivirt\'s own stop (its lock held: an update, a removal) is not restarted nor held; an exit meanwhile is', async () => {
  const t = await setup('always');
  await t.locks.run('web', () => t.processEnds('exited 0\noutside-signal 15\n'));
  await t.sup().idle();
  assert.is(t.clock.nextIn(), undefined);
  assert.not.ok(await operatorStopsOf(t.stateDir).has('web'));
  // the process ending by itself while ocivirt holds the lock for something else is its own exit
  const u = await setup('always');
  await u.locks.run('web', () => u.processEnds('exited 3\n'));
  await u.sup().idle();
  assert.is(u.clock.nextIn(), 1000);
});

test('the restart record survives a daemon restart: the planned restart is armed again by the pass', async () => {
  const t = await setup('always');
  await t.processEnds('exited 3\n');
  assert.is(t.clock.nextIn(), 1000);
  const sup = t.restartSupervisor(); // the old one's timers are gone with it
  assert.is(t.clock.nextIn(), undefined);
  assert.ok((await restartRecordsOf(t.stateDir).get('web'))?.nextAt);
  await t.clock.advance(400);
  await sup.reconcile(new Set(['web']));
  assert.is(t.clock.nextIn(), 600, 'the rest of the delay');
  await t.clock.advance(600);
  await t.restarted(1);
});

test('an exit nobody heard (no daemon then) is found by the pass, once', async () => {
  const t = await setup('always');
  await t.processEnds('exited 5\n', 'shutdown', false);
  assert.is(t.clock.nextIn(), undefined);
  await t.sup().reconcile(new Set(['web']));
  assert.is(t.clock.nextIn(), 1000);
  await t.sup().reconcile(new Set(['web']));
  assert.equal(t.named('domain.exited').length, 1, 'dealt with twice');
});

test('a start by someone else begins the count again', async () => {
  const t = await setup('on-failure:1');
  await t.processEnds('exited 1\n');
  await t.clock.advance(1000);
  await t.restarted(1);
  await t.processEnds('exited 1\n');
  assert.is((await run(t.stateDir, t.port)).state, 'gave-up');
  await t.port.start('web'); // virsh start
  await settle();
  await t.sup().idle();
  assert.is((await run(t.stateDir, t.port)).restarts, 0);
  await t.processEnds('exited 1\n');
  assert.is(t.clock.nextIn(), 1000);
});

test('the backoff: pure decision', () => {
  const rec = { restarts: 0, quick: 0, since: 0 };
  const always = parseRestartPolicy('always')!;
  assert.equal(afterExit(always, { kind: 'exited', code: 1 }, rec, 10, 5, BACKOFF).decision, { action: 'restart', delayMs: 1000, crashLooping: false });
  assert.equal(afterExit(always, { kind: 'exited', code: 1 }, { ...rec, quick: 2 }, 10, 5, BACKOFF).decision, { action: 'restart', delayMs: 4000, crashLooping: false });
  assert.equal(afterExit(always, { kind: 'exited', code: 1 }, { ...rec, quick: 2 }, 10, 60_000, BACKOFF).decision, { action: 'restart', delayMs: 1000, crashLooping: false });
  assert.equal(afterExit(always, { kind: 'exited', code: 1 }, { ...rec, quick: 3 }, 10, 5, BACKOFF).decision, { action: 'restart', delayMs: 60_000, crashLooping: true });
  assert.equal(parseRestartPolicy('on-failure:7'), { mode: 'on-failure', max: 7 });
  assert.is(parseRestartPolicy('sometimes'), undefined);
});

test('a damaged restart record (wrong types, NaN-like values, not JSON) is no record: the count starts over, nothing throws', async () => {
  const dir = join(tmp, 'damaged');
  mkdirSync(join(dir, 'restarts'), { recursive: true });
  const records = restartRecordsOf(dir);
  const put = (text: string) => writeFileSync(join(dir, 'restarts', 'web'), text);
  for (const bad of ['{"restarts":1,"quick":0,"since":"x"}', '{"restarts":1,"quick":0,"since":1,"nextAt":"soon"}', '{"restarts":-1,"quick":0,"since":1}',
    '{"restarts":1.5,"quick":0,"since":1}', '{"restarts":1,"quick":0,"since":1e999}', '[]', 'null', 'not json']) {
    put(bad);
    assert.is(await records.get('web'), undefined, bad);
  }
  put('{"restarts":2,"quick":1,"since":1700000000000,"nextAt":1700000001000}');
  assert.is((await records.get('web'))?.restarts, 2, 'a whole record is read');
});

test.run();
