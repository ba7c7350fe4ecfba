/**
 * The reconciler on the real libvirtd: create (and start), update under both policies, delete
 * under both policies, idempotence (20 unchanged passes, zero writes), unmanaged domains left
 * alone, a name collision with an unmanaged domain failing alone, a broken entry failing alone
 * without its domain being deleted, and the CLI (plan, sync --once).
 * Every domain carries a per-run prefix, so passes never see other tests' domains.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import { captureLog } from '../helpers/log.js';
import * as assert from 'uvu/assert';
import { readOwnership } from '../../src/convert/ownership.js';
import { connectLibvirt } from '../../src/libvirt/adapter.js';
import type { LibvirtPort } from '../../src/libvirt/port.js';
import { syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { withoutShim } from '../../src/shim/domain.js';
import {
  TEST_PREFIX,
  TEST_URI,
  cleanupDomains,
  countingPort,
  domainState,
  isAlive,
  isDefined,
  makeTempDir,
  removeTempDir,
  virsh,
  waitForExit,
  waitForInit,
  writeBundleConfig,
  writeBusyboxBundle,
} from '../helpers/libvirt.js';

const PREFIX = `${TEST_PREFIX}rec-${process.pid}-`;
const repoRoot = new URL('../../..', import.meta.url).pathname;
let tmp = '';
let spool = '';
let state = '';
let port: LibvirtPort;

const START = { 'org.ocivirt.start': 'true' };


function options(extra: Partial<SyncOptions> = {}): SyncOptions {
  return {
    spoolDir: spool,
    stateDir: state,
    prefix: PREFIX,
    log: captureLog().log,
    stopTimeoutMs: 500,
    retryDelayMs: 50,
    ...extra,
  };
}

const dom = (entry: string) => `${PREFIX}${entry}`;

function owner(name: string) {
  return readOwnership(parseDomainXml(virsh('dumpxml', '--inactive', name)));
}

test.before(async () => {
  cleanupDomains(PREFIX);
  tmp = makeTempDir('reconcile');
  spool = join(tmp, 'spool');
  state = join(tmp, 'state');
  port = await connectLibvirt(TEST_URI);
});

test.after(async () => {
  await port?.close();
  cleanupDomains(PREFIX);
  removeTempDir(tmp);
});

test('create: new entries are defined with our ownership; the annotated one is started and its init runs', async () => {
  writeBusyboxBundle(join(spool, 'web-1'), { annotations: START });
  writeBusyboxBundle(join(spool, 'idle'), { args: ['/bin/sleep', '100'] });
  const { events: lines, log } = captureLog();
  const r = await syncOnce(port, options({ log }));
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(
    r.plan.map((i) => [i.domain, i.action, i.start]),
    [
      [dom('idle'), 'create', false],
      [dom('web-1'), 'create', true],
    ],
  );
  assert.is(domainState(dom('web-1')), 'running');
  assert.is(domainState(dom('idle')), 'shut off');
  await waitForInit(dom('web-1'), ['/bin/sleep', '300']);
  assert.equal(owner(dom('web-1'))?.entry, 'web-1');
  assert.match(owner(dom('idle'))?.desiredDigest ?? '', /^sha256:[0-9a-f]{64}$/);
  const events = lines.map((l) => `${String(l.event)} ${String(l.domain ?? '')}`);
  assert.ok(events.includes(`domain.defined ${dom('web-1')}`));
  assert.ok(events.includes(`domain.started ${dom('web-1')}`));
  assert.not.ok(events.includes(`domain.started ${dom('idle')}`));
  // the per-entry status is kept in the state directory
  const status = JSON.parse(readFileSync(join(state, 'status.json'), 'utf8')) as { entries: Array<{ entry: string; result: string }> };
  assert.equal(status.entries.map((e) => [e.entry, e.result]), [
    ['idle', 'ok'],
    ['web-1', 'ok'],
  ]);
});

test('idempotence: 20 passes over the unchanged spool make zero libvirt writes', async () => {
  const counted = countingPort(port);
  for (let i = 0; i < 20; i++) {
    const r = await syncOnce(counted.port, options());
    assert.equal(r.plan.map((p) => p.action), ['nothing', 'nothing'], `pass ${i}: ${r.plan.map((p) => p.reason).join('; ')}`);
  }
  assert.is(counted.counts.get('define') ?? 0, 0, 'defines');
  assert.is(counted.writes(), 0, `writes: ${JSON.stringify([...counted.counts])}`);
  assert.ok((counted.counts.get('inactiveXml') ?? 0) >= 40, 'the passes did read the definitions');
});

test('update, policy next-start: redefined, the running container is left alone, the change is pending', async () => {
  const before = await waitForInit(dom('web-1'), ['/bin/sleep', '300']);
  writeBundleConfig(join(spool, 'web-1'), { args: ['/bin/sleep', '301'], annotations: START });
  const { events: lines, log } = captureLog();
  const counted = countingPort(port);
  // next-start said explicitly: the default is live (the same here, for a process change, but said as domain.updated)
  const r = await syncOnce(counted.port, options({ log, updatePolicy: 'next-start' }));
  const item = r.plan.find((i) => i.domain === dom('web-1'))!;
  assert.is(item.action, 'update');
  assert.match(item.reason, /initarg/);
  assert.ok(r.results.find((x) => x.item === item)?.pending);
  assert.is(counted.counts.get('define'), 1);
  assert.is((counted.counts.get('stop') ?? 0) + (counted.counts.get('sendSignal') ?? 0), 0);
  assert.equal(withoutShim(parseDomainXml(virsh('dumpxml', '--inactive', dom('web-1')))).os.initargs, ['301'], 'the process the shim runs');
  assert.ok(isAlive(before.initPid), 'the running init was disturbed');
  assert.is(domainState(dom('web-1')), 'running');
  assert.ok(lines.some((l) => l.event === 'domain.pending' && l.domain === dom('web-1')));
  // and the next pass sees nothing to do
  const again = countingPort(port);
  await syncOnce(again.port, options());
  assert.is(again.writes(), 0);
});

test('update, policy restart: stopped gracefully (or destroyed after the timeout) and started with the new definition', async () => {
  const before = await waitForInit(dom('web-1'), ['/bin/sleep', '300']);
  writeBundleConfig(join(spool, 'web-1'), { args: ['/bin/sleep', '302'], annotations: START });
  const r = await syncOnce(port, options({ updatePolicy: 'restart' }));
  assert.equal(r.failed.map((f) => f.error), []);
  assert.ok(await waitForExit(before.initPid), 'old init still alive');
  await waitForInit(dom('web-1'), ['/bin/sleep', '302']);
  assert.is(domainState(dom('web-1')), 'running');
});

test('unmanaged domains are untouched; a name collision with one fails alone and changes nothing', async () => {
  const rootfs = join(spool, 'idle', 'rootfs');
  const unmanagedXml = (name: string) =>
    `<domain type='lxc'><name>${name}</name><memory unit='MiB'>64</memory><os><type>exe</type><init>/bin/sh</init></os>` +
    `<devices><filesystem type='mount'><source dir='${rootfs}'/><target dir='/'/></filesystem><console type='pty'/></devices></domain>`;
  for (const name of [dom('clash'), dom('hand-made')]) {
    writeFileSync(join(tmp, `${name}.xml`), unmanagedXml(name));
    virsh('define', join(tmp, `${name}.xml`));
  }
  const clashBefore = virsh('dumpxml', '--inactive', dom('clash'));
  const handBefore = virsh('dumpxml', '--inactive', dom('hand-made'));
  writeBusyboxBundle(join(spool, 'clash'));
  writeBusyboxBundle(join(spool, 'fresh'));
  const r = await syncOnce(port, options());
  assert.equal(
    r.failed.map((f) => [f.item.domain, f.item.entry]),
    [[dom('clash'), 'clash']],
  );
  assert.match(r.failed[0]!.error ?? '', /not managed by ocivirt/);
  assert.ok(isDefined(dom('fresh')), 'the other entry was held back by the collision');
  assert.is(virsh('dumpxml', '--inactive', dom('clash')), clashBefore);
  assert.is(virsh('dumpxml', '--inactive', dom('hand-made')), handBefore);
  // the unmanaged domain not in the spool is not deleted either
  assert.not.ok(r.plan.some((i) => i.domain === dom('hand-made')));
  rmSync(join(spool, 'clash'), { recursive: true });
});

test('a broken entry fails alone, and the domain it had is kept, not deleted', async () => {
  writeFileSync(join(spool, 'idle', 'config.json'), '{ not json');
  writeBusyboxBundle(join(spool, 'second'));
  const counted = countingPort(port);
  const r = await syncOnce(counted.port, options());
  assert.equal(r.failed.map((f) => f.item.entry), ['idle']);
  assert.match(r.failed[0]!.error ?? '', /config\.json.*not valid JSON/);
  assert.ok(isDefined(dom('idle')), 'the broken entry lost its domain');
  assert.ok(isDefined(dom('second')));
  assert.is(counted.counts.get('undefine') ?? 0, 0);
  writeBundleConfig(join(spool, 'idle'), { args: ['/bin/sleep', '100'] });
  const healed = await syncOnce(port, options());
  assert.equal(healed.failed, []);
  assert.is(healed.plan.find((i) => i.domain === dom('idle'))?.action, 'nothing');
});

test('two entries for one domain name are both refused, a host device is refused; the others go on', async () => {
  writeBusyboxBundle(join(spool, 'dup'));
  writeFileSync(join(spool, 'dup.tar'), 'not read: the name alone collides');
  writeBusyboxBundle(join(spool, 'dev'));
  const cfgPath = join(spool, 'dev', 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { linux: Record<string, unknown> };
  cfg.linux.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229 }];
  writeFileSync(cfgPath, JSON.stringify(cfg));
  writeBusyboxBundle(join(spool, 'fine'));
  const r = await syncOnce(port, options());
  const failed = new Map(r.failed.map((f) => [f.item.entry, f.error ?? '']));
  assert.equal([...failed.keys()].sort(), ['dev', 'dup', 'dup.tar']);
  assert.match(failed.get('dup')!, /name collision/);
  assert.match(failed.get('dup.tar')!, /name collision/);
  assert.match(failed.get('dev')!, /linux\.devices\[0\]\.path: host device "\/dev\/fuse"/);
  assert.not.ok(isDefined(dom('dup')) || isDefined(dom('dev')));
  assert.ok(isDefined(dom('fine')));
  for (const e of ['dup', 'dup.tar', 'dev', 'fine']) rmSync(join(spool, e), { recursive: true });
  const after = await syncOnce(port, options());
  assert.equal(after.plan.filter((i) => i.action !== 'nothing').map((i) => `${i.action} ${i.domain}`), [`delete ${dom('fine')}`]);
});

test('delete: policy keep leaves the domain; policy undefine stops the running one and undefines both', async () => {
  const running = await waitForInit(dom('web-1'), ['/bin/sleep', '302']);
  rmSync(join(spool, 'web-1'), { recursive: true });
  rmSync(join(spool, 'second'), { recursive: true });
  const kept = await syncOnce(port, options({ removePolicy: 'keep' }));
  assert.equal(kept.failed, []);
  assert.match(kept.plan.find((i) => i.domain === dom('web-1'))?.reason ?? '', /kept/);
  assert.ok(isDefined(dom('web-1')) && isDefined(dom('second')));
  assert.ok(isAlive(running.initPid));

  const { events: lines, log } = captureLog();
  const r = await syncOnce(port, options({ log }));
  assert.equal(r.failed, []);
  assert.equal(
    r.plan.filter((i) => i.action === 'delete').map((i) => i.domain),
    [dom('second'), dom('web-1')],
  );
  assert.not.ok(isDefined(dom('web-1')));
  assert.not.ok(isDefined(dom('second')));
  assert.ok(await waitForExit(running.initPid), 'init of the removed entry still running');
  assert.ok(lines.some((l) => l.event === 'domain.undefined' && l.domain === dom('web-1')));
  // unmanaged ones survive every pass
  assert.ok(isDefined(dom('hand-made')) && isDefined(dom('clash')));
});

test('a start that never completed (marker left in the state dir) is finished by the next pass', async () => {
  writeBusyboxBundle(join(spool, 'late'), { annotations: START });
  // the first pass dies at the start: its port refuses to start anything
  const failing = new Proxy(port, {
    get: (target, prop) =>
      prop === 'start' ? async () => Promise.reject(new Error('simulated crash before start')) : (Reflect.get(target, prop) as unknown),
  }) as LibvirtPort;
  const first = await syncOnce(failing, options({ attempts: 1 }));
  assert.equal(first.failed.map((f) => f.item.domain), [dom('late')]);
  assert.is(domainState(dom('late')), 'shut off');
  assert.ok(existsSync(join(state, 'pending-start', dom('late'))));
  const second = await syncOnce(port, options());
  assert.equal(second.plan.filter((i) => i.action !== 'nothing').map((i) => `${i.action} ${i.domain}`), [`start ${dom('late')}`]);
  await waitForInit(dom('late'), ['/bin/sleep', '300']);
  assert.not.ok(existsSync(join(state, 'pending-start', dom('late'))));
  // an operator's later stop is respected: no marker, no restart
  virsh('destroy', dom('late'));
  const counted = countingPort(port);
  await syncOnce(counted.port, options());
  assert.is(counted.writes(), 0);
  assert.is(domainState(dom('late')), 'shut off');
  rmSync(join(spool, 'late'), { recursive: true });
  const cleaned = await syncOnce(port, options());
  assert.equal(cleaned.plan.filter((i) => i.action !== 'nothing').map((i) => `${i.action} ${i.domain}`), [`delete ${dom('late')}`]);
});

test('CLI: plan prints without acting; sync --once acts, summarises, and exits 1 when an entry failed', () => {
  writeBusyboxBundle(join(spool, 'cli-one'));
  const env = { ...process.env, OCIVIRT_NAME_PREFIX: PREFIX, OCIVIRT_CONFIG: join(tmp, 'no-config.json') };
  writeFileSync(env.OCIVIRT_CONFIG, '{}');
  const run = (...args: string[]) => spawnSync(join(repoRoot, 'bin/ocivirt'), args, { encoding: 'utf8', env });
  const plan = run('plan', '--spool', spool, '--state', state, '--uri', TEST_URI);
  assert.is(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, new RegExp(`^create\\s+${dom('cli-one')}\\s+new entry`, 'm'));
  assert.not.ok(isDefined(dom('cli-one')), 'plan acted');

  const sync = run('sync', '--once', '--spool', spool, '--state', state, '--uri', TEST_URI);
  assert.is(sync.status, 0, sync.stderr);
  assert.match(sync.stdout, /sync: 1 created, 0 updated, 0 started, 0 deleted, \d+ unchanged, 0 failed/);
  assert.ok(isDefined(dom('cli-one')));

  writeBusyboxBundle(join(spool, 'clash'));
  const failing = run('sync', '--once', '--spool', spool, '--state', state, '--uri', TEST_URI);
  assert.is(failing.status, 1);
  assert.match(failing.stderr, new RegExp(`failed: ${dom('clash')} \\(entry clash\\): .*not managed by ocivirt`));
  assert.match(failing.stdout, /1 failed/);
  rmSync(join(spool, 'clash'), { recursive: true });

  const usage = run('sync', '--spool', spool);
  assert.is(usage.status, 2);
  assert.ok(existsSync(join(state, 'status.json')));
});

test.run();
