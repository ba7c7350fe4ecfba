/** DomainLocks: work on one domain never overlaps, work on different domains does, failures do not jam. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DomainLocks } from '../../src/reconcile/apply.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

function recorder() {
  const events: string[] = [];
  const task = (label: string, fail = false) => async () => {
    events.push(`start ${label}`);
    await tick();
    await tick();
    events.push(`end ${label}`);
    if (fail) throw new Error(`${label} failed`);
    return label;
  };
  return { events, task };
}

test('one domain: strictly one after the other, in call order', async () => {
  const locks = new DomainLocks();
  const { events, task } = recorder();
  const results = await Promise.all([locks.run('a', task('a1')), locks.run('a', task('a2')), locks.run('a', task('a3'))]);
  assert.equal(results, ['a1', 'a2', 'a3']);
  assert.equal(events, ['start a1', 'end a1', 'start a2', 'end a2', 'start a3', 'end a3']);
});

test('different domains run at the same time', async () => {
  const locks = new DomainLocks();
  const { events, task } = recorder();
  await Promise.all([locks.run('a', task('a')), locks.run('b', task('b'))]);
  assert.equal(events.slice(0, 2), ['start a', 'start b']);
});

test('a failure is the caller\'s alone; the next task on the domain still runs', async () => {
  const locks = new DomainLocks();
  const { events, task } = recorder();
  const first = locks.run('a', task('bad', true));
  const second = locks.run('a', task('good'));
  const failure = await first.then(
    () => 'resolved',
    (e: Error) => e.message,
  );
  assert.is(failure, 'bad failed');
  assert.is(await second, 'good');
  assert.equal(events, ['start bad', 'end bad', 'start good', 'end good']);
});

test.run();
