/**
 * Stopping as the image asks (reconcile/stop.ts) on the in-memory libvirt and the fake clock: the
 * signal chosen (settings > image > SIGTERM), an unknown one replaced and warned about, the stop
 * timeout then SIGKILL, destroy when even that fails (forced: true), a graceful stop (forced: false),
 * stops of different domains in one pass running at once, and a daemon's pass not waiting for them.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyPlan, type ApplyOptions } from '../../src/reconcile/apply.js';
import type { PlanItem } from '../../src/reconcile/plan.js';
import { KILL_GRACE_MS, signalOf, stopPolicyOf } from '../../src/reconcile/stop.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const IMAGE = 'org.opencontainers.image.stopSignal';
const SIGNAL = 'org.ocivirt.settings.stopSignal';
const TIMEOUT = 'org.ocivirt.settings.stopTimeout';

/** A domain's XML with ocivirt's metadata carrying `annotations`. */
function xmlOf(name: string, annotations: Record<string, string> = {}, version = 1): string {
  const a = Object.entries(annotations)
    .map(([k, v]) => `<ocivirt:annotation key='${k}'>${v}</ocivirt:annotation>`)
    .join('');
  return (
    `<domain type='lxc'><name>${name}</name><description>v${version}</description><metadata>` +
    `<ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' schema='1' entry='${name}' desiredDigest='sha256:${'0'.repeat(64)}'>${a}</ocivirt:container>` +
    `</metadata></domain>`
  );
}

const remove = (name: string): PlanItem => ({ domain: name, entry: name, action: 'delete', reason: 'gone' });

function setup(extra: Partial<ApplyOptions> = {}) {
  const clock = new FakeClock();
  const port = new FakeLibvirt(clock);
  const { log, events } = captureLog();
  const opts: ApplyOptions = { log, clock, retryDelayMs: 100, attempts: 3, stopTimeoutMs: 5_000, ...extra };
  return { clock, port, events, opts, named: (event: string) => events.filter((e) => e.event === event) };
}

test('signal names: with or without SIG, any case, or a number 1 to 31; real-time and unknown ones are none', () => {
  assert.equal(
    ['SIGTERM', 'TERM', 'sigquit', '9', '10', ' SIGUSR2 ', 'SIGIOT', 'SIGRTMIN+3', '34', '0', 'SIGFOO', '', 'SIG', 'TERM; rm -rf /'].map(signalOf),
    ['SIGTERM', 'SIGTERM', 'SIGQUIT', 'SIGKILL', 'SIGUSR1', 'SIGUSR2', 'SIGABRT', undefined, undefined, undefined, undefined, undefined, undefined, undefined],
  );
});

test('policy: settings over the image over SIGTERM; the settings timeout over the daemon\'s', () => {
  const p = (a: Record<string, string>) => {
    const { signal, timeoutMs, from, warnings } = stopPolicyOf(xmlOf('a', a), 30_000);
    return { signal, timeoutMs, from, warnings: warnings.length };
  };
  assert.equal(p({}), { signal: 'SIGTERM', timeoutMs: 30_000, from: 'default', warnings: 0 });
  assert.equal(p({ [IMAGE]: 'SIGQUIT' }), { signal: 'SIGQUIT', timeoutMs: 30_000, from: 'image', warnings: 0 });
  assert.equal(p({ [IMAGE]: 'SIGQUIT', [SIGNAL]: 'INT', [TIMEOUT]: '5' }), { signal: 'SIGINT', timeoutMs: 5_000, from: 'settings', warnings: 0 });
  assert.equal(p({ [TIMEOUT]: '0' }), { signal: 'SIGTERM', timeoutMs: 0, from: 'default', warnings: 0 });
  assert.equal(p({ [TIMEOUT]: '1e9' }), { signal: 'SIGTERM', timeoutMs: 30_000, from: 'default', warnings: 1 });
  // a hostile image's label: not sent, SIGTERM instead, said
  const bad = stopPolicyOf(xmlOf('a', { [IMAGE]: 'SIGRTMIN+3' }), 30_000);
  assert.equal([bad.signal, bad.from], ['SIGTERM', 'default']);
  assert.match(bad.warnings[0]!, /"SIGRTMIN\+3" \(the image's StopSignal\) is not a signal ocivirt sends; SIGTERM instead/);
  // no ocivirt metadata, or XML that is not a domain: the defaults
  assert.equal(stopPolicyOf(`<domain type='lxc'><name>a</name></domain>`, 7_000).signal, 'SIGTERM');
  assert.equal(stopPolicyOf('not xml <', 7_000).timeoutMs, 7_000);
});

test('removal: the image\'s StopSignal reaches the init, which stops on it: forced false, no destroy, then undefined', async () => {
  const { port, opts, named } = setup();
  const xml = xmlOf('a', { [IMAGE]: 'SIGQUIT' });
  port.add({ name: 'a', xml, liveXml: xml, state: 'running', stopsOn: ['SIGQUIT'] });
  const [r] = await applyPlan(port, [remove('a')], opts);
  assert.ok(r!.ok);
  assert.not.ok(port.domains.has('a'));
  assert.is(port.count('destroy'), 0);
  assert.is(port.count('stop'), 0, 'libvirt\'s shutdown is not used');
  const [stopped] = named('domain.stopped');
  assert.equal({ ...stopped, ms: 0 }, { ...stopped, domain: 'a', entry: 'a', signal: 'SIGQUIT', forced: false, ms: 0, level: 'info', reason: 'gone' });
  assert.equal(named('domain.undefined').map((e) => e.domain), ['a']);
});

test('the settings\' stopSignal wins over the image\'s', async () => {
  const { port, opts, named } = setup();
  const xml = xmlOf('a', { [IMAGE]: 'SIGQUIT', [SIGNAL]: 'SIGUSR1' });
  const d = port.add({ name: 'a', xml, liveXml: xml, state: 'running', stopsOn: ['SIGUSR1'] });
  await applyPlan(port, [remove('a')], opts);
  assert.equal(d.signals, ['SIGUSR1']);
  assert.equal(named('domain.stopped').map((e) => [e.signal, e.forced]), [['SIGUSR1', false]]);
});

test('stubborn: the signal is ignored; killed (SIGKILL to its init) once the settings\' stopTimeout has passed on the clock, logged forced (warn)', async () => {
  const { clock, port, opts, named } = setup();
  const xml = xmlOf('a', { [TIMEOUT]: '2' });
  const d = port.add({ name: 'a', xml, liveXml: xml, state: 'running', ignoresShutdown: true });
  const done = applyPlan(port, [remove('a')], opts);
  await clock.advance(1_900);
  assert.is(d.state, 'running', 'killed before its timeout');
  assert.equal(d.signals, ['SIGTERM']);
  await clock.advance(200);
  const [r] = await done;
  assert.ok(r!.ok);
  assert.equal(d.signals, ['SIGTERM', 'SIGKILL']);
  assert.is(port.count('destroy'), 0, 'down with its init: nothing left to destroy');
  assert.not.ok(port.domains.has('a'));
  const [stopped] = named('domain.stopped');
  assert.equal([stopped!.level, stopped!.signal, stopped!.forced], ['warn', 'SIGTERM', true]);
  assert.ok((stopped!.ms as number) >= 2_000 && (stopped!.ms as number) < 2_200, `ms ${String(stopped!.ms)}`);
});

test('one that outlives even SIGKILL is destroyed after the kill grace, logged forced', async () => {
  const { clock, port, opts, named } = setup();
  const xml = xmlOf('a', { [TIMEOUT]: '1' });
  const d = port.add({ name: 'a', xml, liveXml: xml, state: 'running', ignoresShutdown: true, survivesKill: true });
  const done = applyPlan(port, [remove('a')], opts);
  await clock.advance(1_100);
  assert.equal([d.signals, port.count('destroy')], [['SIGTERM', 'SIGKILL'], 0]);
  await clock.advance(KILL_GRACE_MS);
  const [r] = await done;
  assert.ok(r!.ok);
  assert.is(port.count('destroy'), 1);
  assert.not.ok(port.domains.has('a'));
  assert.equal(named('domain.stopped').map((e) => [e.signal, e.forced]), [['SIGTERM', true]]);
});

test('an unknown stop signal: SIGTERM is sent instead and the warning logged (domain.stopping)', async () => {
  const { port, opts, named } = setup();
  const xml = xmlOf('a', { [IMAGE]: 'SIGRTMIN+3' });
  const d = port.add({ name: 'a', xml, liveXml: xml, state: 'running' });
  await applyPlan(port, [remove('a')], opts);
  assert.equal(d.signals, ['SIGTERM']);
  const warned = named('domain.stopping').filter((e) => e.level === 'warn');
  assert.is(warned.length, 1);
  assert.match(String(warned[0]!.warning), /SIGRTMIN\+3/);
  assert.equal(named('domain.stopped').map((e) => [e.signal, e.forced]), [['SIGTERM', false]]);
});

test('restart update: the signal is the running definition\'s (the old image\'s), not the new one\'s', async () => {
  const { port, opts, named } = setup({ updatePolicy: 'restart' });
  const old = xmlOf('a', { [IMAGE]: 'SIGINT' }, 1);
  const next = xmlOf('a', { [IMAGE]: 'SIGQUIT' }, 2);
  const d = port.add({ name: 'a', xml: old, liveXml: old, state: 'running' });
  const [r] = await applyPlan(port, [{ domain: 'a', entry: 'a', action: 'update', reason: 'changed', xml: next }], opts);
  assert.ok(r!.ok);
  assert.equal([d.state, d.liveXml, d.signals], ['running', next, ['SIGINT']]);
  assert.equal(named('domain.stopped').map((e) => [e.signal, e.forced]), [['SIGINT', false]]);
});

test('a shut off domain is not signalled, and no stop is logged', async () => {
  const { port, opts, named } = setup();
  port.add({ name: 'a', xml: xmlOf('a') });
  const [r] = await applyPlan(port, [remove('a')], opts);
  assert.ok(r!.ok);
  assert.equal([port.count('sendSignal'), port.count('destroy'), named('domain.stopped').length], [0, 0, 0]);
});

test('20 stubborn domains removed in one pass: stopped at once, done in about one timeout (not twenty); a creation is not held up', async () => {
  const timeout = 200;
  const { clock, port, opts, named } = setup({ stopTimeoutMs: timeout, concurrency: 2 });
  const names = Array.from({ length: 20 }, (_, i) => `s${String(i).padStart(2, '0')}`);
  for (const n of names) port.add({ name: n, xml: xmlOf(n), liveXml: xmlOf(n), state: 'running', ignoresShutdown: true });
  const t0 = clock.now();
  const plan: PlanItem[] = [...names.map(remove), { domain: 'new', entry: 'new', action: 'create', reason: 'new entry', xml: xmlOf('new') }];
  const results = await clock.runUntil(applyPlan(port, plan, opts), 10);
  const elapsed = clock.now() - t0;
  assert.ok(results.every((r) => r.ok));
  assert.ok(elapsed < 5 * timeout, `took ${elapsed} ms of clock time for 20 stops of ${timeout} ms`);
  assert.equal([...port.domains.keys()], ['new']);
  const stopped = named('domain.stopped');
  assert.equal(stopped.map((e) => e.domain).sort(), names);
  assert.ok(stopped.every((e) => e.forced === true));
  // the same domain is never stopped twice
  assert.equal(names.map((n) => [port.count('sendSignal', n), port.count('destroy', n)]), names.map(() => [2, 0]), 'SIGTERM and SIGKILL each');
});

test('with a step budget (the daemon) the pass does not wait for a stop: the removal is busy at once and ends by itself', async () => {
  const { clock, port, opts, named } = setup();
  const ends: Promise<unknown>[] = [];
  const steps = { deadlineMs: 60_000, patienceMs: 3_000, clock, onDetach: (_entry: string, ended: Promise<unknown>) => void ends.push(ended) };
  const xml = xmlOf('a', { [TIMEOUT]: '2' });
  port.add({ name: 'a', xml, liveXml: xml, state: 'running', ignoresShutdown: true });
  const t0 = clock.now();
  const [r] = await clock.runUntil(applyPlan(port, [remove('a')], { ...opts, steps }), 10);
  assert.equal([r!.ok, r!.busy, port.domains.get('a')?.state], [true, true, 'running']);
  assert.ok(clock.now() - t0 < 100, `the pass waited ${clock.now() - t0} ms of clock time`);
  assert.is(ends.length, 1);
  await clock.runUntil(Promise.all(ends), 10);
  assert.not.ok(port.domains.has('a'));
  assert.equal(named('domain.stopped').map((e) => e.forced), [true]);
});

test.run();
