/** domain.drifted: logged once per distinct hand edit across passes, again after the domain is back in step. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import { captureLog } from '../helpers/log.js';
import * as assert from 'uvu/assert';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { applyPlan } from '../../src/reconcile/apply.js';
import { HandEdits } from '../../src/reconcile/hand-edits.js';
import type { PlanItem } from '../../src/reconcile/plan.js';

const dir = mkdtempSync(join(tmpdir(), 'ocivirt-test-hand-edits-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** 'nothing' items never reach libvirt: any call fails the test. */
const noLibvirt = new Proxy({}, { get: (_t, prop) => () => { throw new Error(`unexpected libvirt call ${String(prop)}`); } }) as LibvirtPort;


const kept = (digest: string): PlanItem => ({
  domain: 'web',
  entry: 'web',
  action: 'nothing',
  reason: 'changed in libvirt by hand; kept (driftPolicy keep)',
  differences: ['memtune.hard_limit - -> 300000'],
  handEdit: { actualDigest: digest, policy: 'keep' },
});
const unchanged: PlanItem = { domain: 'web', entry: 'web', action: 'nothing', reason: 'unchanged' };

/** One pass: a fresh HandEdits over the same directory, as syncOnce and the daemon make. */
async function pass(item: PlanItem): Promise<string[]> {
  const { events, log } = captureLog();
  const [r] = await applyPlan(noLibvirt, [item], { log, handEdits: new HandEdits(dir) });
  assert.ok(r!.ok);
  return events.filter((e) => e.event === 'domain.drifted').map((e) => `${String(e.domain)} ${String(e.policy)} ${String(e.actualDigest)} ${JSON.stringify(e.differences)}`);
}

test('a kept hand edit is logged at the first pass only; a new edit, or the same one after being in step, again', async () => {
  assert.equal(await pass(kept('sha256:1')), ['web keep sha256:1 ["memtune.hard_limit - -> 300000"]']);
  assert.equal(await pass(kept('sha256:1')), []);
  assert.equal(await pass(kept('sha256:1')), []);
  assert.equal((await pass(kept('sha256:2'))).length, 1, 'a further edit is news');
  assert.equal(await pass(kept('sha256:2')), []);
  assert.equal(await pass(unchanged), []);
  assert.equal((await pass(kept('sha256:2'))).length, 1, 'edited back and then again: news again');
});

test.run();
