/**
 * The daemon's pass queue: one pass at a time, bursts batched, a full pass covering what was
 * pending, backoff on the clock after a pass fails as a whole, resyncs on schedule; and, with the
 * in-memory libvirt, a libvirtd outage that ends in every entry defined.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PassQueue } from '../../src/daemon/queue.js';
import { syncPass, type PassScope } from '../../src/reconcile/sync.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

/** A count the test can await reaching a value (an event, not a poll). */
function counter() {
  let n = 0;
  const waiters: { at: number; resolve: () => void }[] = [];
  return {
    bump() {
      n += 1;
      for (const w of waiters.filter((w) => w.at <= n)) w.resolve();
    },
    get value() {
      return n;
    },
    reach: (at: number) => (n >= at ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ at, resolve }))),
  };
}

const show = (s: PassScope) => (s === 'all' ? 'all' : [...s].join(','));

/** A queue whose passes the test finishes (`finish()`) or fails (`fail()`) one by one. */
function controlled(opts: { retryMs?: number; maxEntriesPerPass?: number } = {}) {
  const clock = new FakeClock();
  const passes: string[] = [];
  const failures: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const waiting: { resolve: () => void; reject: (e: Error) => void }[] = [];
  const queue = new PassQueue({
    clock,
    ...opts,
    run: (scope) => {
      passes.push(show(scope));
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      return new Promise<void>((resolve, reject) => waiting.push({ resolve, reject })).finally(() => (running -= 1));
    },
    onFailure: (scope) => failures.push(show(scope)),
  });
  const finish = async () => {
    waiting.shift()!.resolve();
    await settle();
  };
  const fail = async () => {
    waiting.shift()!.reject(new Error('libvirt gone'));
    await settle();
  };
  return { clock, queue, passes, failures, finish, fail, maxRunning: () => maxRunning, waiting };
}

test('entries reported during a pass wait for it, then go in one pass; never two passes at once', async () => {
  const q = controlled();
  q.queue.addEntry('a');
  await settle();
  q.queue.addEntry('b');
  q.queue.addEntry('c');
  q.queue.addEntry('b');
  await settle();
  assert.equal(q.passes, ['a']);
  await q.finish();
  assert.equal(q.passes, ['a', 'b,c']);
  await q.finish();
  assert.is(q.maxRunning(), 1);
  assert.is(q.waiting.length, 0);
});

test('a burst becomes passes of at most maxEntriesPerPass, each entry once', async () => {
  const q = controlled({ maxEntriesPerPass: 3 });
  q.queue.addEntry('first');
  for (let i = 0; i < 7; i++) q.queue.addEntry(`e${i}`);
  await settle();
  while (q.waiting.length) await q.finish();
  assert.equal(q.passes, ['first', 'e0,e1,e2', 'e3,e4,e5', 'e6']);
});

test('a full pass pending covers the entries pending with it', async () => {
  const q = controlled();
  q.queue.addEntry('a');
  await settle();
  q.queue.addEntry('b');
  q.queue.addFull();
  q.queue.addEntry('c');
  await q.finish();
  await q.finish();
  assert.equal(q.passes, ['a', 'all']);
  assert.is(q.waiting.length, 0);
});

test('a failed pass: nothing runs until retryMs has passed on the clock; then its scope and what came meanwhile run', async () => {
  const q = controlled({ retryMs: 2_000 });
  q.queue.addEntry('a');
  await settle();
  await q.fail();
  assert.equal(q.failures, ['a']);
  q.queue.addEntry('b');
  await q.clock.advance(1_999);
  assert.equal(q.passes, ['a'], 'a pass ran during the backoff');
  await q.clock.advance(1);
  assert.equal(q.passes, ['a', 'a,b']);
  await q.finish();
  assert.is(q.clock.pending, 0, 'a timer left armed after success');
});

test('a failed full pass is retried as a full pass', async () => {
  const q = controlled({ retryMs: 500 });
  q.queue.addFull();
  await settle();
  await q.fail();
  await q.clock.advance(500);
  assert.equal(q.passes, ['all', 'all']);
  await q.finish();
});

test('resyncs come every interval; stop() ends the schedule and the backoff', async () => {
  const q = controlled({ retryMs: 100 });
  q.queue.resyncEvery(60_000);
  await q.clock.advance(60_000);
  assert.equal(q.passes, ['all']);
  await q.finish();
  await q.clock.advance(60_000);
  assert.equal(q.passes, ['all', 'all']);
  await q.fail();
  q.queue.stop();
  await q.clock.advance(120_000);
  assert.equal(q.passes, ['all', 'all']);
  assert.is(q.clock.pending, 0);
});

test('with the in-memory libvirt: passes fail while libvirtd is away, back off, and define every entry once it is back', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-queue-'));
  try {
    const spool = join(tmp, 'spool');
    for (const name of ['a', 'b']) writeMinimalBundle(join(spool, name));
    const clock = new FakeClock();
    const port = new FakeLibvirt(clock);
    port.inject('listDomains', 'unavailable');
    port.inject('lookup', 'unavailable');
    const { log } = captureLog();
    const known = new Map<string, string>();
    const failures = counter();
    const passed = counter();
    const done: string[] = [];
    const queue = new PassQueue({
      clock,
      retryMs: 2_000,
      run: async (scope) => {
        await syncPass(port, { spoolDir: spool, log, clock }, { scope, settled: () => true, known, unpackEvents: false });
        done.push(show(scope));
        passed.bump();
      },
      onFailure: () => failures.bump(),
    });
    queue.addFull();
    queue.addEntry('b');
    await failures.reach(1);
    await clock.advance(1_999);
    assert.is(port.count('listDomains'), 1, 'a pass ran during the backoff');
    await clock.advance(1);
    await failures.reach(2);
    port.heal();
    await clock.advance(2_000);
    await passed.reach(1);
    assert.equal(done, ['all']);
    assert.equal([...port.domains.keys()].sort(), ['a', 'b']);
    queue.stop();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test.run();
