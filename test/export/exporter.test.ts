/**
 * The exporter's queue on the in-memory libvirt and a fake clock: hints debounced, one export of
 * a domain at a time with at most one more queued, a failing or vanished domain never stopping
 * the others, full passes on schedule, and stop() waiting for what is in flight.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { Exporter, type ExporterOptions } from '../../src/export/exporter.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { runcSpec, testOptions } from '../convert/fixtures.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-exporter-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

/** A definition as ocivirt writes it (owned by entry `name`), or one made by someone else. */
function domainXml(name: string, managed = true, hostname = 'h1'): string {
  const config = { ...runcSpec(), hostname };
  return buildDomainXml(fromNative(config, testOptions({ name, ...(managed ? { owner: { entry: name } } : {}) })).domain);
}

let serial = 0;
function setup(extra: Partial<ExporterOptions> = {}) {
  const clock = new FakeClock();
  const port = new FakeLibvirt(clock);
  const { log, events, count } = captureLog();
  const exportDir = join(tmp, `e${serial++}`);
  const exporter = new Exporter({ port, exportDir, definitionsDir: undefined, exportAllDomains: false, checkIntervalMs: 60_000, debounceMs: 100, clock, log, ...extra });
  const exported = (name: string) => {
    const p = join(exportDir, name, 'config.json');
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as { hostname?: string }) : undefined;
  };
  const named = (event: string) => events.filter((e) => e.event === event);
  const written = (n: number) => count((e) => e.event === 'export.written', n);
  return { clock, port, exporter, exported, named, written };
}

test('hints within the debounce window become one export, after the window', async () => {
  const { clock, port, exporter, exported, written } = setup();
  port.add({ name: 'web', xml: domainXml('web') });
  exporter.hint('web');
  await clock.advance(60);
  exporter.hint('web');
  exporter.hint('web');
  await clock.advance(99);
  assert.is(port.count('inactiveXml', 'web'), 0, 'exported before the window closed');
  await clock.advance(1);
  await written(1);
  assert.is(port.count('inactiveXml', 'web'), 1);
  assert.is(exported('web')?.hostname, 'h1');
});

test('exports asked for while one runs: one more runs after it, not one per request', async () => {
  const { port, exporter, written } = setup();
  port.add({ name: 'web', xml: domainXml('web') });
  port.inject('inactiveXml', 'hang', { name: 'web', times: 1 });
  const first = exporter.exportNow('web');
  await port.waitFor(() => port.hanging.length === 1);
  for (let i = 0; i < 5; i++) void exporter.exportNow('web');
  port.releaseHung();
  await first;
  await written(1); // the one queued behind it
  await settle();
  assert.is(port.count('inactiveXml', 'web'), 2);
});

test('a full pass: a domain that fails is logged and the others are exported; a vanished one is no failure', async () => {
  const { port, exporter, exported, named } = setup();
  for (const n of ['a', 'b', 'c', 'gone']) port.add({ name: n, xml: domainXml(n) });
  port.inject('inactiveXml', 'refused', { name: 'b' });
  port.inject('inactiveXml', 'notfound', { name: 'gone' });
  port.inject('lookup', 'notfound', { name: 'gone' });
  await exporter.fullPass();
  assert.equal(['a', 'b', 'c', 'gone'].map((n) => exported(n) !== undefined), [true, false, true, false]);
  assert.equal(named('export.failed').map((e) => e.domain), ['b']);
});

test('only managed domains with the prefix, unless exportAllDomains', async () => {
  const { port, exporter, exported } = setup({ prefix: 'p-' });
  port.add({ name: 'p-web', xml: domainXml('p-web') });
  port.add({ name: 'other', xml: domainXml('other') });
  port.add({ name: 'p-hand', xml: domainXml('p-hand', false) });
  await exporter.fullPass();
  assert.equal(['p-web', 'other', 'p-hand'].map((n) => exported(n) !== undefined), [true, false, false]);
  exporter.update({ exportAllDomains: true, checkIntervalMs: 60_000 });
  await exporter.fullPass();
  assert.equal(['p-web', 'other', 'p-hand'].map((n) => exported(n) !== undefined), [true, true, true]);
  await exporter.stop();
});

test('full passes come every checkIntervalMs and find a change no hint told of; an unchanged domain is not rewritten', async () => {
  const { clock, port, exporter, exported, named, written } = setup();
  port.add({ name: 'web', xml: domainXml('web') });
  await exporter.start();
  assert.is(named('export.written').length, 1);
  port.domains.get('web')!.xml = domainXml('web', true, 'h2');
  await clock.advance(59_999);
  assert.is(exported('web')?.hostname, 'h1');
  await clock.advance(1);
  await written(2);
  assert.is(exported('web')?.hostname, 'h2');
  await clock.advance(60_000);
  // the timer's pass may be running or already done: wait for its read (not a pass of our own, which
  // would read once more), then let stop() wait for whatever it still has in flight
  for (let i = 0; i < 1000 && port.count('inactiveXml', 'web') < 3; i++) await new Promise((r) => setImmediate(r));
  await exporter.stop();
  assert.is(port.count('inactiveXml', 'web'), 3);
  assert.is(named('export.written').length, 2, 'an unchanged domain was rewritten');
});

test('lifecycle events: a define or undefine by someone else is exported at once, without a hint; missed events bring a full pass', async () => {
  const { clock, port, exporter, exported, written } = setup();
  await exporter.start();
  port.add({ name: 'web', xml: domainXml('web') });
  const uuid = port.domains.get('web')!.uuid;
  port.emit({ type: 'lifecycle', name: 'web', uuid, kind: 'defined', detail: 'added' });
  await written(1);
  assert.is(exported('web')?.hostname, 'h1');
  // a start changes no definition: nothing to export
  port.emit({ type: 'lifecycle', name: 'web', uuid, kind: 'started', detail: 'booted' });
  await settle();
  assert.is(port.count('inactiveXml', 'web'), 1);
  // changed while the connection was down: only the full pass after the resubscription finds it
  port.domains.get('web')!.xml = domainXml('web', true, 'h2');
  port.emit({ type: 'resubscribed' });
  await written(2);
  assert.is(exported('web')?.hostname, 'h2');
  await exporter.stop();
  port.emit({ type: 'lifecycle', name: 'web', uuid, kind: 'defined', detail: 'updated' });
  await clock.advance(1_000);
  assert.is(port.count('inactiveXml', 'web'), 2, 'an event after stop() exported');
});

test('stop(): a pending hint is dropped, the export in flight is waited for, nothing starts afterwards', async () => {
  const { clock, port, exporter, exported } = setup();
  port.add({ name: 'a', xml: domainXml('a') });
  port.add({ name: 'b', xml: domainXml('b') });
  port.inject('inactiveXml', 'hang', { name: 'a', times: 1 });
  void exporter.exportNow('a');
  exporter.hint('b');
  await port.waitFor(() => port.hanging.length === 1);
  let stopped = false;
  const stopping = exporter.stop().then(() => (stopped = true));
  await settle();
  assert.not.ok(stopped, 'stop() did not wait for the export in flight');
  port.releaseHung();
  await stopping;
  exporter.hint('a');
  await clock.advance(1_000);
  assert.is(exported('b'), undefined);
  assert.equal([port.count('inactiveXml', 'a'), port.count('inactiveXml', 'b')], [1, 0]);
});

test('an undefined domain\'s export is moved aside to .removed/<name>/, replacing an older one; a full pass finds one undefined while nothing watched', async () => {
  const { port, exporter, exported, named } = setup();
  port.add({ name: 'web', xml: domainXml('web') });
  await exporter.exportNow('web');
  assert.ok(exported('web'));
  const exportDir = join(named('export.written')[0]!.path as string, '..', '..');
  mkdirSync(join(exportDir, '.removed', 'web'), { recursive: true });
  writeFileSync(join(exportDir, '.removed', 'web', 'stale'), '');
  await port.undefine('web');
  await exporter.exportNow('web');
  assert.is(exported('web'), undefined);
  assert.ok(existsSync(join(exportDir, '.removed', 'web', 'config.json')));
  assert.not.ok(existsSync(join(exportDir, '.removed', 'web', 'stale')));
  assert.equal(readdirSync(join(exportDir, '.removed')), ['web']);
  assert.is(named('export.removed').length, 1);
  // an export left behind (the domain undefined while the daemon was down): the next pass moves it
  mkdirSync(join(exportDir, 'old'));
  writeFileSync(join(exportDir, 'old', 'config.json'), '{}');
  await exporter.fullPass();
  assert.not.ok(existsSync(join(exportDir, 'old')));
  assert.ok(existsSync(join(exportDir, '.removed', 'old', 'config.json')));
});

test.run();
