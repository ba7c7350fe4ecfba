/**
 * Ownership scoped to one instance (issue 8 item 3): several ocivirt instances on one libvirtd
 * (other spools, other state directories) never change or delete each other's domains, even
 * with the default empty name prefix; a name collision fails the entry and says whose the domain
 * is; domains made before instance ids are adopted only by the instance whose spool or state
 * directory made them. The instance id file itself: made once, atomically, shared by every pass
 * with the same state directory, never silently replaced.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { actualState } from '../../src/reconcile/actual.js';
import { ensureInstanceId, INSTANCE_FILE, readInstanceId } from '../../src/reconcile/instance.js';
import { computeSyncPlan, syncOnce, type SyncOptions } from '../../src/reconcile/sync.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';

const tmp = mkdtempSync(join(tmpdir(), 'ocivirt-test-instances-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = (label: string) => join(tmp, `${label}-${++n}`);

const WRITES = new Set(['define', 'undefine', 'start', 'stop', 'sendSignal', 'destroy']);
const writes = (port: FakeLibvirt) => port.calls.filter((c) => WRITES.has(c.method)).length;
const xmlOf = (port: FakeLibvirt, name: string) => port.domains.get(name)?.xml ?? '';
const names = (port: FakeLibvirt) => [...port.domains.keys()].sort();
const bundle = (spool: string, entry: string, arg = 'v1') => writeMinimalBundle(join(spool, entry), arg);

/** One instance: its own spool and state directory, the default empty name prefix. */
function instance(label: string) {
  const root = fresh(label);
  const spool = join(root, 'spool');
  mkdirSync(spool, { recursive: true });
  const captured = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: join(root, 'state'), log: captured.log, retryDelayMs: 1, stopTimeoutMs: 10 };
  return { spool, opts, events: captured.events };
}

test('instance id: made once (0600, a UUID), the same for every later pass; plan reads it and never makes it', async () => {
  const state = fresh('state');
  assert.is(await readInstanceId(state), undefined);
  assert.throws(() => readdirSync(state), /ENOENT/, 'reading made nothing');
  const id = await ensureInstanceId(state);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.is(statSync(join(state, INSTANCE_FILE)).mode & 0o777, 0o600);
  assert.is(await ensureInstanceId(state), id);
  assert.is(await readInstanceId(state), id);
  assert.equal(readdirSync(state), [INSTANCE_FILE], 'no temporary file left');
});

test('instance id: processes making it at once all get the one id (the first link wins)', async () => {
  const state = fresh('state');
  const ids = await Promise.all(Array.from({ length: 12 }, () => ensureInstanceId(state)));
  assert.is(new Set(ids).size, 1);
  assert.is(readFileSync(join(state, INSTANCE_FILE), 'utf8').trim(), ids[0]);
  assert.equal(readdirSync(state), [INSTANCE_FILE]);
});

test('instance id: a damaged file is an error naming it, never silently replaced (that would disown every domain)', async () => {
  const state = fresh('state');
  mkdirSync(state);
  writeFileSync(join(state, INSTANCE_FILE), 'not an id\n');
  for (const f of [readInstanceId, ensureInstanceId]) {
    const err = await f(state).then(
      () => undefined,
      (e: Error) => e,
    );
    assert.match(err?.message ?? '', `${join(state, INSTANCE_FILE)}: is not an ocivirt instance id`);
  }
  assert.is(readFileSync(join(state, INSTANCE_FILE), 'utf8'), 'not an id\n');
});

test("another instance's sync --once on an empty spool deletes nothing; its plan plans nothing for them", async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  bundle(a.spool, 'web');
  bundle(a.spool, 'db');
  await syncOnce(port, a.opts);
  assert.equal(names(port), ['db', 'web']);

  const b = instance('b');
  assert.equal(await computeSyncPlan(port, b.opts), []);
  const before = writes(port);
  const result = await syncOnce(port, b.opts);
  assert.equal(result.plan, []);
  assert.is(writes(port), before, 'no libvirt write');
  assert.equal(names(port), ['db', 'web']);

  // the owner still deletes its own when its entry goes
  rmSync(join(a.spool, 'db'), { recursive: true });
  await syncOnce(port, a.opts);
  assert.equal(names(port), ['web']);
});

test("a name collision with another instance's domain fails the entry, says whose it is, and changes nothing", async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  bundle(a.spool, 'web', 'a');
  await syncOnce(port, a.opts);
  const before = xmlOf(port, 'web');

  const b = instance('b');
  bundle(b.spool, 'web', 'b');
  const result = await syncOnce(port, b.opts);
  assert.equal(result.plan.map((i) => `${i.action} ${i.domain}`), ['fail web']);
  const idA = await readInstanceId(a.opts.stateDir!);
  assert.match(result.plan[0]!.reason, `belongs to another ocivirt instance (id ${idA}`);
  assert.is(xmlOf(port, 'web'), before, "A's definition untouched");
  const said = b.events.find((e) => e.event === 'domain.foreign');
  assert.ok(said, 'domain.foreign logged');
  assert.is(said!.domain, 'web');
  assert.is((said!.owner as { instance: string }).instance, idA);
  const status = JSON.parse(readFileSync(join(b.opts.stateDir!, 'status.json'), 'utf8')) as { entries: { result: string; reason: string }[] };
  assert.is(status.entries[0]!.result, 'failed');
  assert.match(status.entries[0]!.reason, 'belongs to another ocivirt instance');

  // B's entry gone: B still deletes nothing of A's
  rmSync(join(b.spool, 'web'), { recursive: true });
  assert.equal((await syncOnce(port, b.opts)).plan, []);
  assert.is(xmlOf(port, 'web'), before);
});

test('sync --once and plan with the same state directory are the same instance as the daemon; the id is in every domain', async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  bundle(a.spool, 'web');
  await syncOnce(port, a.opts);
  const id = await readInstanceId(a.opts.stateDir!);
  assert.match(xmlOf(port, 'web'), `instance='${id}'`);
  const daemonLike = { ...a.opts, instance: id };
  assert.equal((await computeSyncPlan(port, daemonLike)).map((i) => i.action), ['nothing']);
  assert.equal((await computeSyncPlan(port, a.opts)).map((i) => i.action), ['nothing']);
});

/** A domain as an ocivirt older than instance ids defined it: metadata with entry and bundle, no instance. */
function legacyDomain(port: FakeLibvirt, name: string, bundleDir: string) {
  const config = {
    ociVersion: '1.0.2',
    process: { args: ['/bin/sh'], cwd: '/', user: { uid: 0, gid: 0 } },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  };
  const r = fromNative(config as never, { bundleDir, name, cgroupVersion: 1, owner: { entry: name } });
  assert.is(r.domain.metadata.ours?.instance, undefined);
  return port.define(buildDomainXml(r.domain));
}

test('domains made before instance ids: adopted when their bundle is in this spool, else left alone with a warning', async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  await legacyDomain(port, 'mine', join(a.spool, 'mine'));
  await legacyDomain(port, 'theirs', '/srv/other-spool/theirs');
  await legacyDomain(port, 'gone', join(a.spool, 'gone'));

  const have = await actualState(port, { id: await ensureInstanceId(a.opts.stateDir!), spoolDir: a.spool, stateDir: a.opts.stateDir! });
  assert.equal([...have.managed.keys()].sort(), ['gone', 'mine']);
  assert.equal([...have.foreign.keys()], ['theirs']);

  const result = await syncOnce(port, a.opts);
  // 'mine' has no entry any more: it is this instance's, so it goes; 'theirs' stays
  assert.equal(result.plan.map((i) => `${i.action} ${i.domain}`), ['delete gone', 'delete mine']);
  assert.equal(names(port), ['theirs']);
  const warned = a.events.filter((e) => e.event === 'domain.foreign');
  assert.equal(warned.map((e) => e.domain), ['theirs']);
  assert.match(String(warned[0]!.msg), 'without instance ids');
});

test('an adopted domain whose entry did not change is unchanged (no redefine, no hand-edit report); a change stamps the id', async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  bundle(a.spool, 'web');
  // what the previous version made from this very entry: the same definition, minus the id
  await syncOnce(port, a.opts);
  port.domains.get('web')!.xml = xmlOf(port, 'web').replace(/ instance='[^']*'/, '');
  const before = writes(port);
  const result = await syncOnce(port, a.opts);
  assert.equal(result.plan.map((i) => i.action), ['nothing']);
  assert.match(result.plan[0]!.reason, 'adopted');
  assert.is(writes(port), before);
  assert.not.ok(a.events.some((e) => e.event === 'domain.drifted'));

  bundle(a.spool, 'web', 'changed');
  await syncOnce(port, a.opts);
  assert.match(xmlOf(port, 'web'), `instance='${await readInstanceId(a.opts.stateDir!)}'`);
});

test('a domain whose definition does not parse is nobody\'s to change: an entry of that name fails, saying why', async () => {
  const port = new FakeLibvirt();
  const a = instance('a');
  port.add({ name: 'web', xml: '<domain><name>web</name', state: 'running' });
  bundle(a.spool, 'web');
  const result = await syncOnce(port, a.opts);
  assert.equal(result.plan.map((i) => `${i.action} ${i.domain}`), ['fail web']);
  assert.match(result.plan[0]!.reason, "domain 'web' already exists but its definition cannot be read");
  assert.is(writes(port), 0);
});

test('a domain of the same name that appears between the plan and the define (another instance) is not defined over', async () => {
  const theirs = "<domain type='lxc'><name>web</name><metadata><ocivirt:container xmlns:ocivirt='urn:ocivirt:metadata:1' entry='web' instance='00000000-0000-4000-8000-000000000000' desiredDigest='sha256:0'/></metadata></domain>";
  class Racing extends FakeLibvirt {
    override lookup(name: string) {
      if (!this.domains.has(name)) this.add({ name, xml: theirs }); // the other instance's define lands now
      return super.lookup(name);
    }
  }
  const port = new Racing();
  const a = instance('a');
  bundle(a.spool, 'web');
  const result = await syncOnce(port, a.opts);
  assert.equal(result.plan.map((i) => `${i.action} ${i.domain}`), ['create web']);
  assert.is(result.failed.length, 1);
  assert.match(result.failed[0]!.error ?? '', 'appeared since this pass planned it');
  assert.is(port.count('define'), 0);
  assert.is(xmlOf(port, 'web'), theirs);
});

test.run();
