/** computePlan, the pure heart of the reconciler: every rule of issue 4's semantics, no libvirt. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fromNative } from '../../src/convert/from-native.js';
import { readOwnership } from '../../src/convert/ownership.js';
import type { RuntimeConfig } from '../../src/oci/runtime-spec.js';
import type { ActualState, ManagedDomain } from '../../src/reconcile/actual.js';
import { startDecision, type DesiredDomain, type DesiredState } from '../../src/reconcile/desired.js';
import { computePlan } from '../../src/reconcile/plan.js';
import { buildDomainXml } from '../../src/xml/build.js';
import { parseDomainXml } from '../../src/xml/parse.js';

function config(args: string[]): RuntimeConfig {
  return {
    ociVersion: '1.0.2',
    process: { terminal: true, user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin'], cwd: '/' },
    root: { path: 'rootfs' },
    linux: { namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }, { type: 'ipc' }] },
  } as RuntimeConfig;
}

function desired(entry: string, args = ['/bin/sleep', '1'], start = false): DesiredDomain {
  const r = fromNative(config(args), { bundleDir: `/spool/${entry}`, name: entry, cgroupVersion: 1, hostArch: 'x86_64', owner: { entry } });
  return { entry, domainName: entry, domain: r.domain, start, warnings: [] };
}

/** What libvirt would hand back after defining the desired domain: its XML, parsed again. */
function defined(d: DesiredDomain, uuid?: string): ManagedDomain {
  const domain = parseDomainXml(buildDomainXml(uuid ? { ...d.domain, uuid } : d.domain));
  return { name: d.domainName, uuid: uuid ?? d.domain.uuid!, owner: readOwnership(domain)!, domain };
}

function state(desiredList: DesiredDomain[], failed: DesiredState['failed'] = []): DesiredState {
  return { desired: desiredList, failed };
}

function actual(managed: ManagedDomain[], unmanaged: string[] = []): ActualState {
  return { managed: new Map(managed.map((m) => [m.name, m])), unmanaged: new Set(unmanaged), foreign: new Map(), unreadable: new Map() };
}

const summary = (plan: ReturnType<typeof computePlan>) => plan.map((i) => `${i.action} ${i.domain}`);

test('a new entry is created, started only when asked', () => {
  const plan = computePlan(state([desired('a', undefined, true), desired('b')]), actual([]));
  assert.equal(summary(plan), ['create a', 'create b']);
  assert.is(plan[0]!.start, true);
  assert.is(plan[1]!.start, false);
  assert.match(plan[0]!.xml ?? '', '<name>a</name>');
  assert.match(plan[0]!.digest ?? '', /^sha256:/);
});

test('a domain left stopped says why, when created and in every later pass', () => {
  const d = { ...desired('a'), notStarted: "startPolicy 'never'" };
  const [created] = computePlan(state([d]), actual([]));
  assert.is(created!.reason, "new entry; defined, not started: startPolicy 'never'");
  const [later] = computePlan(state([d]), actual([defined(d)]));
  assert.is(later!.action, 'nothing');
  assert.match(later!.reason, /^unchanged.*; not started by ocivirt: startPolicy 'never'$/);
  const started = desired('b', undefined, true);
  assert.is(computePlan(state([started]), actual([]))[0]!.reason, 'new entry');
  assert.not.match(computePlan(state([started]), actual([defined(started)]))[0]!.reason, 'not started');
});

test('the start decision: policy, then the org.ocivirt.start annotation, says why not', () => {
  assert.equal(startDecision(undefined, 'always'), { start: true });
  assert.equal(startDecision('true', 'annotation'), { start: true });
  assert.equal(startDecision('true', 'never'), { start: false, notStarted: "startPolicy 'never'" });
  assert.equal(startDecision('false', 'always'), { start: false, notStarted: 'annotation org.ocivirt.start is "false"' });
  assert.equal(startDecision(undefined, 'annotation'), { start: false, notStarted: "startPolicy 'annotation' and no annotation org.ocivirt.start: \"true\"" });
});

test('an entry whose domain says the same thing is left alone, however libvirt wrote it', () => {
  const d = desired('a');
  assert.equal(summary(computePlan(state([d]), actual([defined(d)]))), ['nothing a']);
});

test('a changed entry is an update that says what changed', () => {
  const before = desired('a', ['/bin/sleep', '1']);
  const after = desired('a', ['/bin/sleep', '2']);
  const [item] = computePlan(state([after]), actual([defined(before)]));
  assert.is(item!.action, 'update');
  assert.ok(item!.differences!.some((d) => d.includes('initarg')), item!.differences!.join('; '));
  assert.match(item!.xml ?? '', '<initarg>2</initarg>');
});

test('a redefine keeps the UUID libvirt has for a domain we own', () => {
  const d = desired('a', ['/bin/sleep', '2']);
  const old = defined(desired('a', ['/bin/sleep', '1']), '11111111-2222-3333-4444-555555555555');
  const [item] = computePlan(state([d]), actual([old]));
  assert.is(item!.action, 'update');
  assert.match(item!.xml ?? '', '<uuid>11111111-2222-3333-4444-555555555555</uuid>');
  assert.not.ok(item!.differences!.some((x) => x.startsWith('uuid')), 'the UUID is not a difference');
});

test('a managed domain whose entry is gone is deleted, or kept under the keep policy', () => {
  const gone = defined(desired('old'));
  assert.equal(summary(computePlan(state([]), actual([gone]))), ['delete old']);
  const kept = computePlan(state([]), actual([gone]), { removePolicy: 'keep' });
  assert.equal(summary(kept), ['nothing old']);
  assert.match(kept[0]!.reason, /keep/);
});

test('an entry colliding with an unmanaged domain fails alone; unmanaged domains are never planned', () => {
  const plan = computePlan(state([desired('taken'), desired('free')]), actual([], ['taken', 'someone-elses']));
  assert.equal(summary(plan), ['create free', 'fail taken']);
  assert.match(plan[1]!.reason, /not managed by ocivirt/);
  assert.not.ok(plan.some((i) => i.domain === 'someone-elses'));
});

test('a failed entry fails, and the domain it had is neither deleted nor changed', () => {
  const had = defined(desired('broken'));
  const plan = computePlan(state([], [{ entry: 'broken', domainName: 'broken', error: 'config.json: not valid JSON' }]), actual([had]));
  assert.equal(summary(plan), ['fail broken']);
  // a refused item whose domain name is unknown still protects the domain made from it
  const refused = computePlan(state([], [{ entry: 'broken', error: 'is a symlink' }]), actual([had]));
  assert.equal(summary(refused), ['fail ', 'nothing broken']);
});

test('a domain whose start never completed is started; nothing else is', () => {
  const a = desired('a');
  const b = desired('b');
  const plan = computePlan(state([a, b]), actual([defined(a), defined(b)]), { pendingStarts: new Set(['a']) });
  assert.equal(summary(plan), ['start a', 'nothing b']);
  const changed = computePlan(state([desired('a', ['/bin/sleep', '9'])]), actual([defined(a)]), { pendingStarts: new Set(['a']) });
  assert.equal([changed[0]!.action, changed[0]!.start], ['update', true]);
});

/** libvirt's definition after `virsh memtune <d> --hard-limit 300000 --config`. */
function handEdited(m: ManagedDomain): ManagedDomain {
  const domain = parseDomainXml(buildDomainXml({ ...m.domain, memtune: { ...m.domain.memtune, hardLimit: 300000 } }));
  return { ...m, domain, owner: readOwnership(domain)! };
}

test('a hand edit of an unchanged entry is kept by default, and says how libvirt differs', () => {
  const d = desired('a');
  const [item] = computePlan(state([d]), actual([handEdited(defined(d))]));
  assert.is(item!.action, 'nothing');
  assert.is(item!.reason, 'changed in libvirt by hand; kept (driftPolicy keep)');
  assert.ok(item!.differences!.some((x) => x.startsWith('memtune.hard_limit')), item!.differences!.join('; '));
  assert.match(item!.handEdit?.actualDigest ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.is(item!.xml, undefined);
});

test('driftPolicy revert redefines a hand-edited domain from the spool', () => {
  const d = desired('a');
  const [item] = computePlan(state([d]), actual([handEdited(defined(d))]), { driftPolicy: 'revert' });
  assert.is(item!.action, 'update');
  assert.match(item!.reason, /by hand; reverted \(driftPolicy revert\)/);
  assert.not.match(item!.xml ?? '', /hard_limit/);
});

test('a kept hand edit whose start never completed is started, still marked as a kept hand edit', () => {
  const d = desired('a');
  const [item] = computePlan(state([d]), actual([handEdited(defined(d))]), { pendingStarts: new Set(['a']) });
  assert.equal([item!.action, item!.handEdit?.policy, item!.xml], ['start', 'keep', undefined]);
});

test('a changed entry wins over a hand edit, whatever the drift policy', () => {
  const edited = handEdited(defined(desired('a', ['/bin/sleep', '1'])));
  const [item] = computePlan(state([desired('a', ['/bin/sleep', '2'])]), actual([edited]), { driftPolicy: 'keep' });
  assert.is(item!.action, 'update');
  assert.match(item!.reason, /^changed: /);
  assert.is(item!.handEdit, undefined);
});

test('a new image under an unchanged config is not mistaken for a hand edit', () => {
  const d: DesiredDomain = { ...desired('img'), imageDigest: 'sha256:' + 'b'.repeat(64) };
  const old = fromNative(config(['/bin/sleep', '1']), {
    bundleDir: '/spool/img', name: 'img', cgroupVersion: 1, hostArch: 'x86_64', owner: { entry: 'img', imageDigest: 'sha256:' + 'a'.repeat(64) },
  });
  const had = defined({ ...d, domain: old.domain });
  // the ownership metadata differs (imageDigest): an entry change, so an update under keep
  d.domain.metadata.ours!.imageDigest = 'sha256:' + 'b'.repeat(64);
  const [item] = computePlan(state([d]), actual([had]));
  assert.is(item!.action, 'update');
});

test('a hand edit that drops our metadata makes the domain unmanaged; one that alters the digest makes the spool win', () => {
  const d = desired('a');
  const plan = computePlan(state([d]), actual([], ['a']));
  assert.equal(summary(plan), ['fail a']);
  assert.match(plan[0]!.reason, /not managed by ocivirt/);
  const m = defined(d);
  const tampered = { ...m, owner: { ...m.owner, desiredDigest: 'sha256:' + '0'.repeat(64) } };
  tampered.domain = parseDomainXml(buildDomainXml({ ...m.domain, metadata: { ...m.domain.metadata, ours: { ...m.domain.metadata.ours!, desiredDigest: tampered.owner.desiredDigest } } }));
  const [item] = computePlan(state([d]), actual([tampered]));
  assert.is(item!.action, 'update');
  assert.match(item!.xml ?? '', d.domain.metadata.ours!.desiredDigest!);
});

test.run();
