/**
 * An operator's start, stop and restart on the in-memory libvirt: NAME resolved from an entry or a
 * domain (another's refused), the stop marked before it is made, so a pass does not finish a
 * pending start behind the operator's back; a start clears it. The daemon's reading of lifecycle
 * events: a destroy not made by ocivirt holds the domain, a start releases it, a shutdown (the
 * process ending looks the same in libvirt-lxc) and ocivirt's own stops do not.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { heardLifecycle, operatorRestart, operatorStart, operatorStop, operatorStopsOf, resolveDomain } from '../../src/reconcile/operator.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { syncedWeb } from '../helpers/synced-entry.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { rejects } from '../helpers/rejects.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-operator-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
async function setup() {
  const { stateDir, opts, port, log, events } = await syncedWeb(join(tmp, `t${serial++}`), { stopSignal: 'SIGQUIT' });
  return { opts, port, events, stateDir, op: { stateDir, log, defaultTimeoutMs: 1_000 } };
}

test('NAME is an entry, its stem or a domain of this instance; another domain and an unknown name are refused', async () => {
  const { port, stateDir } = await setup();
  assert.is(await resolveDomain(port, stateDir, 'web'), 'web');
  port.add({ name: 'other', xml: "<domain type='lxc'><name>other</name></domain>" });
  await rejects(resolveDomain(port, stateDir, 'other'), /not managed by this ocivirt/);
  await rejects(resolveDomain(port, stateDir, 'nope'), /no entry or domain named 'nope'/);
});

test('stop: marked, then stopped by the stop policy (the entry\'s stopSignal); a pass does not finish a pending start; start clears the mark', async () => {
  const { port, opts, stateDir, op } = await setup();
  const d = port.domains.get('web')!;
  const r = await operatorStop(port, 'web', op);
  assert.equal([r.stopped, r.signal, d.state], [true, 'SIGQUIT', 'shutoff']);
  assert.ok(await operatorStopsOf(stateDir).has('web'));
  // a start the pass that created it never confirmed
  mkdirSync(join(stateDir, 'pending-start'), { recursive: true });
  writeFileSync(join(stateDir, 'pending-start', 'web'), '');
  await syncOnce(port, opts);
  assert.is(d.state, 'shutoff', 'started behind the operator\'s back');
  assert.ok(await operatorStart(port, 'web', op));
  assert.is(d.state, 'running');
  assert.not.ok(await operatorStopsOf(stateDir).has('web'));
  await operatorRestart(port, 'web', op);
  assert.equal([d.state, d.signals], ['running', ['SIGQUIT', 'SIGQUIT']]);
  assert.not.ok(await operatorStopsOf(stateDir).has('web'));
});

test('lifecycle events: a destroy not made by ocivirt holds the domain, a start releases it; a shutdown and ocivirt\'s own stops do not', async () => {
  const { port, stateDir } = await setup();
  const stops = operatorStopsOf(stateDir);
  const ev = (kind: 'stopped' | 'started', detail: string) => ({ type: 'lifecycle' as const, name: 'web', uuid: '', kind, detail });
  await port.destroy('web');
  assert.is(await heardLifecycle(port, stops, ev('stopped', 'destroyed'), () => true), undefined, 'its own stop (busy) held');
  assert.is(await heardLifecycle(port, stops, ev('stopped', 'shutdown'), () => false), undefined);
  assert.is(await heardLifecycle(port, stops, ev('stopped', 'destroyed'), () => false), 'held');
  assert.ok(await stops.has('web'));
  await port.start('web');
  assert.is(await heardLifecycle(port, stops, ev('started', 'booted'), () => false), 'released');
  assert.not.ok(await stops.has('web'));
  // a destroy heard late, once it runs again: nothing to hold
  assert.is(await heardLifecycle(port, stops, ev('stopped', 'destroyed'), () => false), undefined);
});

test.run();
