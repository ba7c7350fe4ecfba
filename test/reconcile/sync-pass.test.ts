/**
 * syncPass on the in-memory libvirt and a real spool directory: a full pass defines every entry
 * and then has nothing left to do, a per-entry pass touches only its entries, a settling entry's
 * domain is left exactly as it is, one entry's failure is that entry's alone, and libvirt gone
 * fails the pass as a whole (the daemon's queue then backs off).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readOwnership } from '../../src/convert/ownership.js';
import { LibvirtUnavailableError } from '../../src/libvirt/port.js';
import { DomainLocks } from '../../src/reconcile/apply.js';
import type { StepBudget } from '../../src/reconcile/steps.js';
import { syncOnce, syncPass, type PassSpec, type SyncOptions } from '../../src/reconcile/sync.js';
import { shimLogOf, withoutShim } from '../../src/shim/domain.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-sync-pass-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

let serial = 0;
/** A fresh spool and state dir; `bundle(name, arg)` writes an entry whose init runs `/bin/sh arg`. */
function setup(extra: Partial<SyncOptions> = {}) {
  const base = join(tmp, `t${serial++}`);
  const spool = join(base, 'spool');
  mkdirSync(spool, { recursive: true });
  const { log, events } = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: join(base, 'state'), log, retryDelayMs: 1, attempts: 2, ...extra };
  const port = new FakeLibvirt();
  const bundle = (name: string, arg = 'v1', annotations: Record<string, string> = {}) => writeMinimalBundle(join(spool, name), arg, annotations);
  const writes = () => ['define', 'undefine', 'start', 'stop', 'sendSignal', 'destroy'].reduce((n, m) => n + port.count(m as 'define'), 0);
  return { spool, opts, port, events, bundle, writes };
}

const spec = (scope: PassSpec['scope'], settled: (entry: string) => boolean = () => true): PassSpec => ({ scope, settled, known: new Map(), unpackEvents: true });
const ownerOf = (port: FakeLibvirt, name: string) => readOwnership(parseDomainXml(port.domains.get(name)!.xml!))?.entry;

test('a full pass defines each entry (started when it asks), owned by it; the next pass makes no libvirt writes', async () => {
  const { opts, port, bundle, writes } = setup();
  bundle('web');
  bundle('db', 'v1', { 'org.ocivirt.start': 'true' });
  const { results } = await syncPass(port, opts, spec('all'));
  assert.equal(results.map((r) => [r.item.entry, r.item.action, r.ok]), [['db', 'create', true], ['web', 'create', true]]);
  assert.equal([ownerOf(port, 'web'), ownerOf(port, 'db')], ['web', 'db']);
  assert.equal([port.domains.get('web')!.state, port.domains.get('db')!.state], ['shutoff', 'running']);
  const before = writes();
  const again = await syncPass(port, opts, spec('all'));
  assert.equal(again.results.map((r) => r.item.action), ['nothing', 'nothing']);
  assert.is(writes(), before, 'an unchanged spool made libvirt writes');
});

test('a changed entry is redefined; a removed one is undefined; a domain that is not ours is never touched', async () => {
  const { spool, opts, port, bundle } = setup();
  bundle('web');
  bundle('db');
  port.add({ name: 'other', xml: "<domain type='lxc'><name>other</name></domain>" });
  await syncPass(port, opts, spec('all'));
  bundle('web', 'v2');
  rmSync(join(spool, 'db'), { recursive: true });
  const { results } = await syncPass(port, opts, spec('all'));
  assert.equal(results.map((r) => [r.item.domain, r.item.action, r.ok]), [['db', 'delete', true], ['web', 'update', true]]);
  assert.equal(withoutShim(parseDomainXml(port.domains.get('web')!.xml!)).os.initargs, ['v2']);
  assert.equal([...port.domains.keys()].sort(), ['other', 'web']);
});

test('a per-entry pass touches only the entries in its scope', async () => {
  const { spool, opts, port, bundle } = setup();
  bundle('a');
  bundle('b');
  await syncPass(port, opts, spec('all'));
  rmSync(join(spool, 'b'), { recursive: true });
  bundle('a', 'v2');
  bundle('c');
  port.calls.length = 0;
  const { results } = await syncPass(port, opts, spec(new Set(['c'])));
  assert.equal(results.map((r) => [r.item.entry, r.item.action]), [['c', 'create']]);
  assert.ok(port.domains.has('b'), "b's removal is not this pass's business");
  assert.not.match(port.domains.get('a')!.xml!, /v2/);
  assert.equal([...new Set(port.calls.map((c) => c.name).filter((n) => n !== undefined))], ['c'], 'libvirt asked about other domains');
});

test('a settling entry is not read, and its domain is neither updated nor deleted', async () => {
  const { spool, opts, port, bundle } = setup();
  bundle('a');
  await syncPass(port, opts, spec('all'));
  const xml = port.domains.get('a')!.xml;
  writeFileSync(join(spool, 'a', 'config.json'), '{"half": '); // being rewritten
  const { results, settling } = await syncPass(port, opts, spec('all', (e) => e !== 'a'));
  assert.equal(settling, [{ entry: 'a', domain: 'a' }]);
  assert.equal(results, []);
  assert.is(port.domains.get('a')!.xml, xml);
});

test("one entry's define refused: that entry fails (its error in the status file), the others are defined", async () => {
  const { opts, port, bundle } = setup();
  bundle('a');
  bundle('b');
  bundle('c');
  port.inject('define', 'refused', { name: 'b' });
  const r = await syncOnce(port, opts);
  assert.equal(r.results.map((x) => [x.item.entry, x.ok]), [['a', true], ['b', false], ['c', true]]);
  assert.equal(r.failed.map((x) => x.attempts), [2]);
  assert.equal([...port.domains.keys()].sort(), ['a', 'c']);
});

test('libvirt unavailable: the pass fails as a whole (nothing half-applied), and succeeds once it is back', async () => {
  const { opts, port, bundle } = setup();
  bundle('a');
  port.inject('listDomains', 'unavailable');
  const err = await syncPass(port, opts, spec('all')).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, LibvirtUnavailableError);
  assert.is(port.count('define'), 0);
  port.heal();
  await syncPass(port, opts, spec('all'));
  assert.ok(port.domains.has('a'));
});

test("a hung define for entry A: B is defined in the same pass, C in the next, and A's domain is never worked on twice at once", async () => {
  const clock = new FakeClock();
  const detached: string[] = [];
  const ends: Promise<unknown>[] = [];
  const steps: StepBudget = { deadlineMs: 60_000, patienceMs: 1_000, clock, onDetach: (entry, ended) => (detached.push(entry), ends.push(ended)) };
  // no state dir: once a define has answered, the rest of its item is in memory (no disk I/O racing fake time)
  const { opts, port, bundle } = setup({ steps, locks: new DomainLocks(), clock, stateDir: undefined });
  bundle('a');
  bundle('b');
  port.inject('define', 'hang', { name: 'a' });
  const first = syncPass(port, opts, spec(new Set(['a', 'b'])));
  // fake time moves only once the reads are done (a slow disk must not use up the patience)
  await port.waitFor(() => port.domains.has('b') && port.hanging.length === 1);
  await clock.advance(1_000);
  const r1 = await first;
  assert.equal(r1.results.map((r) => [r.item.entry, r.ok, r.busy ?? false]), [['a', true, true], ['b', true, false]]);
  assert.equal(detached, ['a']);

  bundle('c');
  const r2 = await syncPass(port, opts, spec(new Set(['c'])));
  assert.equal(r2.results.map((r) => [r.item.entry, r.item.action, r.ok]), [['c', 'create', true]]);
  assert.ok(port.domains.has('c'), 'C was held up by A');

  // A again while its define still hangs: it waits for A's lock, never a second define at once
  const lookups = port.count('lookup', 'a');
  const pass3 = syncPass(port, opts, spec(new Set(['a'])));
  await port.waitFor(() => port.count('lookup', 'a') > lookups); // entry A read: only its apply is left
  const third = await clock.runUntil(pass3);
  assert.equal(third.results.map((r) => r.busy), [true]);
  assert.is(port.count('define', 'a'), 1);

  // the adapter's call timeout ends the hung call: the queued work on A then runs (a retry defines it)
  port.heal();
  port.releaseHung();
  await clock.runUntil(Promise.all(ends));
  assert.ok(port.domains.has('a'));
});

test('a step past its deadline is aborted and reported as that entry\'s failure; the others are defined', async () => {
  const clock = new FakeClock();
  const steps: StepBudget = { deadlineMs: 5_000, clock };
  const { opts, port, bundle, events } = setup({ steps, clock, stateDir: undefined });
  bundle('a');
  bundle('b');
  port.inject('define', 'hang', { name: 'a' });
  const pass = syncPass(port, opts, spec('all'));
  await port.waitFor(() => port.domains.has('b') && port.hanging.length === 1);
  await clock.advance(5_000);
  const { results } = await pass;
  assert.equal(results.map((r) => [r.item.entry, r.ok]), [['a', false], ['b', true]]);
  assert.match(results[0]!.error!, /create a: not done within 5000 ms; aborted/);
  assert.equal(events.filter((e) => e.event === 'entry.failed').map((e) => e.entry), ['a']);
  port.releaseHung();
});

test("an undefined domain's directory under <state>/containers (its generated /etc files) is removed with it", async () => {
  const { spool, opts, port, bundle } = setup();
  bundle('a');
  await syncOnce(port, opts);
  const dir = join(opts.stateDir!, 'containers', 'a');
  mkdirSync(join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  rmSync(join(spool, 'a'), { recursive: true });
  await syncOnce(port, opts);
  assert.not.ok(port.domains.has('a'));
  assert.not.ok(existsSync(dir), `${dir} left behind`);
});

test('the daemon\'s logFileBytes travels in each definition; a changed one redefines the domain as a change, not a hand edit', async () => {
  const { opts, port, bundle } = setup({ logFileBytes: 1 << 20 });
  bundle('web');
  await syncOnce(port, opts);
  const capOf = () => shimLogOf(parseDomainXml(port.domains.get('web')!.xml!))?.fileBytes;
  assert.is(capOf(), 1 << 20);
  const { results } = await syncPass(port, { ...opts, logFileBytes: 2 << 20 }, spec('all'));
  assert.equal(results.map((r) => [r.item.action, r.item.handEdit === undefined]), [['update', true]], results.map((r) => r.item.reason).join(' | '));
  assert.is(capOf(), 2 << 20);
});

test.run();
