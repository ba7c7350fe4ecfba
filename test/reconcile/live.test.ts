/**
 * Live updates: the split of a change into what a running domain takes at once (memory, CPU and
 * blkio tuning) and what waits for its start, and whole passes on the in-memory libvirt: a memory
 * change in the settings reaches the running domain's live tuning without a restart and the next
 * pass has nothing to do; an env change is pending until the next start (status says so); the
 * entry's own `updatePolicy` wins over the daemon's.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MEMORY_UNLIMITED_KIB } from '../../src/convert/passes/resources.js';
import { liveSplit } from '../../src/reconcile/live.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { emptyDomain } from '../../src/xml/domain.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-live-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
function setup(extra: Partial<SyncOptions> = {}) {
  const base = join(tmp, `t${serial++}`);
  const spool = join(base, 'spool');
  mkdirSync(spool, { recursive: true });
  const { log, events } = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: join(base, 'state'), log, startPolicy: 'always', retryDelayMs: 1, stopTimeoutMs: 10, ...extra };
  const port = new FakeLibvirt();
  writeMinimalBundle(join(spool, 'web'));
  const settings = (value: unknown) => writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify(value));
  const status = () => JSON.parse(readFileSync(join(opts.stateDir!, 'status.json'), 'utf8')).entries[0];
  return { opts, port, events, settings, status, named: (e: string) => events.filter((x) => x.event === e) };
}

test('liveSplit: tuning keys become typed parameters by family; <memory> rides with the hard limit; metadata is neither; the rest waits', () => {
  const desired = { ...emptyDomain('web'), memory: 131072, memtune: { hardLimit: 131072, extra: [] } } as ReturnType<typeof emptyDomain>;
  const split = liveSplit(desired, [
    { key: 'memory', desired: '131072', actual: '65536' },
    { key: 'memtune.hard_limit', desired: '131072', actual: '65536' },
    { key: 'cputune.quota', desired: '50000', actual: '100000' },
    { key: 'blkiotune.weight', desired: '300', actual: undefined },
    { key: 'metadata.ocivirt.desiredDigest', desired: 'sha256:b', actual: 'sha256:a' },
    { key: 'os.initenv', desired: '[["A","2"]]', actual: '[["A","1"]]' },
  ]);
  assert.equal(split.tuning, [
    { family: 'memory', params: { hard_limit: 131072 } },
    { family: 'scheduler', params: { vcpu_quota: 50000 } },
    { family: 'blkio', params: { weight: 300 } },
  ]);
  assert.equal(split.live.sort(), ['blkiotune.weight', 'cputune.quota', 'memory', 'memtune.hard_limit']);
  assert.equal(split.pending, ['os.initenv']);
});

test('liveSplit: a memory limit removed is set unlimited live; a CPU quota removed waits for the start', () => {
  const desired = { ...emptyDomain('web'), memory: MEMORY_UNLIMITED_KIB };
  const split = liveSplit(desired, [
    { key: 'memory', desired: String(MEMORY_UNLIMITED_KIB), actual: '65536' },
    { key: 'memtune.hard_limit', desired: undefined, actual: '65536' },
    { key: 'cputune.quota', desired: undefined, actual: '50000' },
  ]);
  assert.equal(split.tuning, [{ family: 'memory', params: { hard_limit: MEMORY_UNLIMITED_KIB } }]);
  assert.equal(split.pending, ['cputune.quota']);
});

test('a memory change of a running entry is set live (and in its definition) without a restart; the next pass does nothing', async () => {
  const { opts, port, settings, status, named } = setup();
  settings({ memory: '64M' });
  await syncOnce(port, opts);
  const d = port.domains.get('web')!;
  assert.is(d.state, 'running');
  const liveBefore = d.liveXml;
  settings({ memory: '128M' });
  const r = await syncOnce(port, opts);
  assert.equal(r.results.map((x) => [x.item.action, x.ok, x.pending ?? false]), [['update', true, false]]);
  assert.equal(d.tuning?.live.memory, { hard_limit: 128 * 1024 });
  assert.match(d.xml!, /<hard_limit unit='KiB'>131072<\/hard_limit>/);
  assert.is(d.liveXml, liveBefore, 'restarted: the running definition changed');
  assert.equal([port.count('stop'), port.count('sendSignal'), port.count('destroy'), port.count('start')], [0, 0, 0, 1]);
  const [updated] = named('domain.updated');
  assert.equal([(updated?.live as string[]).sort(), updated?.pending], [['currentMemory', 'memory', 'memtune.hard_limit'], []]);
  assert.equal(named('domain.pending'), []);
  assert.equal([status().result, status().pendingChange], ['ok', undefined]);
  const again = await syncOnce(port, opts);
  assert.equal(again.plan.map((i) => i.action), ['nothing'], 'flaps: redefined again');
  assert.is(port.count('setTuning'), 1);
});

test('an env change of a running entry is pending until its next start (status says what), then in force', async () => {
  const { opts, port, settings, status, named } = setup();
  settings({ memory: '64M' });
  await syncOnce(port, opts);
  settings({ memory: '64M', env: { MODE: 'two' } });
  const r = await syncOnce(port, opts);
  assert.equal(r.results.map((x) => [x.item.action, x.pending]), [['update', true]]);
  assert.is(port.count('setTuning'), 0);
  // through the init shim the process (env included) is in its spec: a change of it is a new shim directory
  assert.equal(named('domain.updated').map((e) => [e.live, e.pending]), [[[], ['os.initenv']]]);
  assert.equal([status().result, status().pendingChange], ['pending', ['os.initenv']]);
  // a later memory change is live; the env change still waits
  settings({ memory: '96M', env: { MODE: 'two' } });
  await syncOnce(port, opts);
  assert.equal(port.domains.get('web')!.tuning?.live.memory, { hard_limit: 96 * 1024 });
  assert.equal([status().result, status().pendingChange], ['pending', ['os.initenv']]);
  // stopped and started (by an operator, no daemon listening): the next pass sees nothing pending
  await port.destroy('web');
  await port.start('web');
  await syncOnce(port, opts);
  assert.equal([status().result, status().pendingChange], ['ok', undefined]);
});

test('the entry\'s updatePolicy wins over the daemon\'s: next-start leaves the memory change for the start, restart restarts', async () => {
  const { opts, port, settings, status, named } = setup();
  settings({ memory: '64M', updatePolicy: 'next-start' });
  await syncOnce(port, opts);
  settings({ memory: '128M', updatePolicy: 'next-start' });
  await syncOnce(port, opts);
  assert.is(port.count('setTuning'), 0);
  assert.equal(named('domain.pending').map((e) => (e.pending as string[]).sort()), [['currentMemory', 'memory', 'memtune.hard_limit']]);
  assert.equal(status().pendingChange.sort(), ['currentMemory', 'memory', 'memtune.hard_limit']);

  const daemonRestarts = setup({ updatePolicy: 'restart' });
  daemonRestarts.settings({ memory: '64M', updatePolicy: 'live' });
  await syncOnce(daemonRestarts.port, daemonRestarts.opts);
  daemonRestarts.settings({ memory: '128M', updatePolicy: 'live' });
  await syncOnce(daemonRestarts.port, daemonRestarts.opts);
  assert.equal([daemonRestarts.port.count('setTuning'), daemonRestarts.port.count('sendSignal')], [1, 0]);
});

test.run();
