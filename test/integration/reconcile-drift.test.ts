/**
 * Hand edits on the real libvirtd: `virsh memtune --hard-limit … --config` of a managed domain
 * is kept under driftPolicy keep (no writes, logged once) and reverted once under revert.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import { captureLog } from '../helpers/log.js';
import * as assert from 'uvu/assert';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { TEST_PREFIX, TEST_URI, cleanupDomains, countingPort, makeTempDir, removeTempDir, virsh, writeBusyboxBundle } from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}drift-${process.pid}-`;
let tmp = '';
let port: LibvirtPort;

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('drift');
  port = await connectLibvirt(TEST_URI);
});

test.after(async () => {
  await port?.close();
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});


const hardLimit = (name: string) => /<hard_limit unit='KiB'>(\d+)<\/hard_limit>/.exec(virsh('dumpxml', '--inactive', name))?.[1];

/** A spool with one bundle, synced once; then the domain is edited by hand. */
async function definedThenEdited(label: string): Promise<{ opts: Omit<SyncOptions, 'log'>; name: string }> {
  const spool = join(tmp, label, 'spool');
  writeBusyboxBundle(join(spool, label));
  // a prefix of its own: the other test's domain is not this spool's to delete
  const prefix = `${PREFIX}${label}-`;
  const opts = { spoolDir: spool, stateDir: join(tmp, label, 'state'), prefix, retryDelayMs: 50 };
  const first = await syncOnce(port, { ...opts, log: captureLog().log });
  assert.equal(first.failed.map((f) => f.error), []);
  const name = `${prefix}${label}`;
  assert.equal(first.plan.map((i) => [i.domain, i.action]), [[name, 'create']]);
  virsh('memtune', name, '--hard-limit', '300000', '--config');
  assert.is(hardLimit(name), '300000');
  return { opts, name };
}

test('driftPolicy keep: three passes after virsh memtune --config make zero writes; the edit stays; logged once', async () => {
  const { opts, name } = await definedThenEdited('keep');
  const counted = countingPort(port);
  const drifted: unknown[] = [];
  for (let i = 0; i < 3; i++) {
    const { events, log } = captureLog();
    const r = await syncOnce(counted.port, { ...opts, log, driftPolicy: 'keep' });
    assert.equal(r.plan.map((p) => [p.action, p.reason]), [['nothing', 'changed in libvirt by hand; kept (driftPolicy keep)']]);
    drifted.push(...events.filter((e) => e.event === 'domain.drifted'));
  }
  assert.is(counted.writes(), 0, JSON.stringify([...counted.counts]));
  assert.is(hardLimit(name), '300000');
  assert.is(drifted.length, 1, 'domain.drifted once, not every pass');
  assert.ok((drifted[0] as { differences: string[] }).differences.some((d) => d.startsWith('memtune.hard_limit')));
});

test('driftPolicy revert: one redefine from the spool, then zero writes', async () => {
  const { opts, name } = await definedThenEdited('revert');
  const counted = countingPort(port);
  const r = await syncOnce(counted.port, { ...opts, log: captureLog().log, driftPolicy: 'revert' });
  assert.equal(r.plan.map((p) => p.action), ['update']);
  assert.is(counted.counts.get('define'), 1);
  assert.is(counted.writes(), 1);
  assert.is(hardLimit(name), undefined);
  for (let i = 0; i < 2; i++) {
    const again = await syncOnce(counted.port, { ...opts, log: captureLog().log, driftPolicy: 'revert' });
    assert.equal(again.plan.map((p) => p.action), ['nothing']);
  }
  assert.is(counted.writes(), 1);
});

test('a hand edit that drops our metadata makes the domain unmanaged: left alone, its entry fails as a name collision', async () => {
  const { opts, name } = await definedThenEdited('nometa');
  const xml = virsh('dumpxml', '--inactive', name).replace(/<metadata>[\s\S]*<\/metadata>/, '');
  assert.not.match(xml, 'urn:ocivirt:metadata');
  const file = join(tmp, 'nometa.xml');
  writeFileSync(file, xml);
  virsh('define', file);
  const counted = countingPort(port);
  const r = await syncOnce(counted.port, { ...opts, log: captureLog().log });
  assert.equal(r.plan.map((p) => [p.domain, p.action]), [[name, 'fail']]);
  assert.match(r.plan[0]!.reason, 'not managed by ocivirt');
  assert.is(counted.writes(), 0);
  assert.is(hardLimit(name), '300000', 'the hand-edited definition is untouched');
});

test.run();
