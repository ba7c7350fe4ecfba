/**
 * applyPlan on the in-memory libvirt: each action's steps, retries with backoff on the clock,
 * steps that succeeded not repeated, a failing item reported without holding up the others.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyPlan, type ApplyOptions } from '../../src/reconcile/apply.js';
import type { PlanItem } from '../../src/reconcile/plan.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const xmlOf = (name: string, version = 1) => `<domain type='lxc'><name>${name}</name><description>v${version}</description></domain>`;
const create = (name: string, start = false): PlanItem => ({ domain: name, entry: name, action: 'create', reason: 'new entry', xml: xmlOf(name), start });

function setup(extra: Partial<ApplyOptions> = {}) {
  const clock = new FakeClock();
  const port = new FakeLibvirt(clock);
  const { log, events } = captureLog();
  const opts: ApplyOptions = { log, clock, retryDelayMs: 100, attempts: 3, stopTimeoutMs: 5_000, ...extra };
  return { clock, port, events, opts, named: (event: string) => events.filter((e) => e.event === event) };
}

test('create with start: defined, then started; both logged', async () => {
  const { port, opts, named } = setup();
  const [r] = await applyPlan(port, [create('a', true)], opts);
  assert.equal({ ok: r!.ok, attempts: r!.attempts }, { ok: true, attempts: 1 });
  assert.is(port.domains.get('a')?.state, 'running');
  assert.equal(named('domain.defined').map((e) => e.domain), ['a']);
  assert.equal(named('domain.started').map((e) => e.domain), ['a']);
});

test('libvirt unavailable twice: retried after 100 then 200 ms on the clock, and the third try defines it', async () => {
  const { clock, port, opts } = setup();
  port.inject('define', 'unavailable', { times: 2 });
  const done = applyPlan(port, [create('a')], opts);
  await settle();
  assert.is(port.count('define'), 1);
  await clock.advance(99);
  assert.is(port.count('define'), 1, 'retried before the first delay was up');
  await clock.advance(1);
  assert.is(port.count('define'), 2);
  await clock.advance(199);
  assert.is(port.count('define'), 2, 'the second delay did not double');
  await clock.advance(1);
  const [r] = await done;
  assert.equal({ ok: r!.ok, attempts: r!.attempts }, { ok: true, attempts: 3 });
  assert.ok(port.domains.has('a'));
});

test('a define refused every time: reported after the last attempt with libvirt\'s reason; the other item is defined', async () => {
  const { clock, port, opts, named } = setup();
  port.inject('define', 'refused', { name: 'bad' });
  const done = applyPlan(port, [create('bad'), create('good')], opts);
  await clock.advance(1_000);
  const [bad, good] = await done;
  assert.equal({ ok: bad!.ok, attempts: bad!.attempts }, { ok: false, attempts: 3 });
  assert.match(bad!.error!, /define bad: operation failed: refused/);
  assert.ok(good!.ok);
  assert.ok(port.domains.has('good') && !port.domains.has('bad'));
  const failed = named('entry.failed');
  assert.equal(failed.map((e) => [e.entry, e.attempts]), [['bad', 3]]);
});

test('a step that succeeded is not repeated: a start that failed once does not define again', async () => {
  const { clock, port, opts } = setup();
  port.inject('start', 'unavailable', { times: 1 });
  const done = applyPlan(port, [create('a', true)], opts);
  await clock.advance(100);
  const [r] = await done;
  assert.ok(r!.ok);
  assert.equal([port.count('define'), port.count('start')], [1, 2]);
  assert.is(port.domains.get('a')?.state, 'running');
});

test('a domain that vanished before its start (not found) fails the item after its attempts', async () => {
  const { clock, port, opts } = setup();
  port.add({ name: 'a', xml: xmlOf('a') });
  port.inject('state', 'notfound', { name: 'a' });
  const done = applyPlan(port, [{ domain: 'a', entry: 'a', action: 'start', reason: 'pending start', start: true }], opts);
  await clock.advance(1_000);
  const [r] = await done;
  assert.is(r!.ok, false);
  assert.match(r!.error!, /Domain not found/);
});

test('delete of a running domain that ignores shutdown: destroyed once stopTimeoutMs has passed on the clock, then undefined', async () => {
  const { clock, port, opts, named } = setup();
  port.add({ name: 'a', xml: xmlOf('a'), state: 'running', liveXml: xmlOf('a'), ignoresShutdown: true });
  const done = applyPlan(port, [{ domain: 'a', entry: 'a', action: 'delete', reason: 'gone' }], opts);
  await clock.advance(4_999);
  assert.is(port.domains.get('a')?.state, 'running', 'stopped before its timeout');
  await clock.advance(1);
  const [r] = await done;
  assert.ok(r!.ok);
  assert.not.ok(port.domains.has('a'));
  assert.equal(named('domain.undefined').map((e) => e.domain), ['a']);
});

test('update of a running domain: next-start leaves it running with the change pending; restart stops and starts it', async () => {
  for (const updatePolicy of ['next-start', 'restart'] as const) {
    const { port, opts } = setup({ updatePolicy });
    port.add({ name: 'a', xml: xmlOf('a', 1), state: 'running', liveXml: xmlOf('a', 1) });
    const item: PlanItem = { domain: 'a', entry: 'a', action: 'update', reason: 'changed', xml: xmlOf('a', 2) };
    const [r] = await applyPlan(port, [item], opts);
    const d = port.domains.get('a')!;
    assert.is(d.xml, xmlOf('a', 2), updatePolicy);
    assert.is(d.state, 'running', updatePolicy);
    if (updatePolicy === 'next-start') {
      assert.equal([r!.pending, port.count('sendSignal'), d.liveXml], [true, 0, xmlOf('a', 1)]);
    } else {
      assert.equal([r!.pending, port.count('sendSignal'), d.liveXml], [undefined, 1, xmlOf('a', 2)]);
    }
  }
});

test('concurrency: a hung define of one domain does not keep the others from being defined', async () => {
  const { clock, port, opts } = setup({ concurrency: 2 });
  port.inject('define', 'hang', { name: 'a' });
  const done = applyPlan(port, [create('a'), create('b'), create('c'), create('d')], opts);
  await port.waitFor(() => ['b', 'c', 'd'].every((n) => port.domains.has(n)));
  assert.equal(port.hanging.map((c) => c.name), ['a']);
  port.releaseHung(); // the adapter's call timeout
  port.heal();
  await clock.advance(100);
  const results = await done;
  assert.equal(results.map((r) => r.ok), [true, true, true, true], 'retried after the call timed out');
});

test.run();
