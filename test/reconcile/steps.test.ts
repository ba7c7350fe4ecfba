/** runStep: a step's result, its deadline (aborted, the pass told at once), its patience (detached), cancellation. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DETACHED, PassCancelledError, runStep, StepTimeoutError, type StepBudget } from '../../src/reconcile/steps.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';

/** A step that ends only when told to, and records the signal it got. */
function step() {
  let finish: (v: string) => void = () => undefined;
  let seen: AbortSignal | undefined;
  const work = (signal: AbortSignal | undefined) => {
    seen = signal;
    return new Promise<string>((resolve) => (finish = resolve));
  };
  return { work, finish: (v: string) => finish(v), signal: () => seen };
}

const outcome = <T>(p: Promise<T>) => p.then((v) => ({ value: v }), (e: unknown) => ({ error: e }));

test('a step that ends in time: its result', async () => {
  const clock = new FakeClock();
  const s = step();
  const out = runStep({ deadlineMs: 1_000, clock }, 'a', 'step a', s.work);
  await settle();
  s.finish('done');
  assert.is(await out, 'done');
  assert.is(clock.pending, 0, 'the deadline timer left armed');
});

test('past its deadline: the signal aborts and the pass gets a StepTimeoutError at once, whether or not the step stops', async () => {
  const clock = new FakeClock();
  const s = step();
  const detached: string[] = [];
  const budget: StepBudget = { deadlineMs: 1_000, clock, onDetach: (entry) => detached.push(entry) };
  const out = outcome(runStep(budget, 'a', 'step a', s.work));
  await clock.advance(999);
  assert.not.ok(s.signal()!.aborted);
  await clock.advance(1);
  const r = (await out) as { error: unknown };
  assert.instance(r.error, StepTimeoutError);
  assert.match(String(r.error), /step a: not done within 1000 ms/);
  assert.ok(s.signal()!.aborted);
  assert.equal(detached, ['a'], 'the step had not ended: its entry is told to wait for it');
});

test('past its patience: DETACHED; `ended` resolves when the step really ends', async () => {
  const clock = new FakeClock();
  const s = step();
  let ended: Promise<unknown> | undefined;
  const out = runStep({ deadlineMs: 10_000, patienceMs: 100, clock, onDetach: (_e, p) => (ended = p) }, 'a', 'step a', s.work);
  await clock.advance(100);
  assert.is(await out, DETACHED);
  let over = false;
  void ended!.then(() => (over = true));
  await settle();
  assert.not.ok(over);
  s.finish('late');
  assert.is(await ended!, undefined);
});

test('detached, then past its deadline: `ended` carries the timeout', async () => {
  const clock = new FakeClock();
  const s = step();
  let ended: Promise<unknown> | undefined;
  const out = runStep({ deadlineMs: 1_000, patienceMs: 100, clock, onDetach: (_e, p) => (ended = p) }, 'a', 'step a', s.work);
  await clock.advance(100);
  assert.is(await out, DETACHED);
  await clock.advance(900);
  s.finish('ignored the abort');
  assert.instance(await ended!, StepTimeoutError);
});

test('the pass cancelled: every step aborts with PassCancelledError', async () => {
  const clock = new FakeClock();
  const ctl = new AbortController();
  const s = step();
  const out = outcome(runStep({ deadlineMs: 1_000, clock, signal: ctl.signal }, 'a', 'step a', s.work));
  await settle();
  ctl.abort();
  assert.instance(((await out) as { error: unknown }).error, PassCancelledError);
  assert.ok(s.signal()!.aborted);
});

test("a step's own failure is its error", async () => {
  const out = await outcome(runStep({ deadlineMs: 1_000, clock: new FakeClock() }, 'a', 'step a', async () => Promise.reject(new Error('bad config'))));
  assert.match(String((out as { error: unknown }).error), /bad config/);
});

test.run();
