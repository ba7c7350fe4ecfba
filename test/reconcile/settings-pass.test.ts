/**
 * Settings entries through a whole pass (in-memory libvirt): settings applied to the domain, a
 * settings change redefines, recorded keys said in the plan; one image entry marked image-only and
 * several settings entries naming it give one unpack and one container tree each; bad settings fail
 * their entry alone, naming the file and the key; unused shared trees are collected.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syncOnce, syncPass, type PassSpec, type SyncOptions } from '../../src/reconcile/sync.js';
import { withoutShim } from '../../src/shim/domain.js';
import { parseDomainXml } from '../../src/xml/parse.js';
import { FakeLibvirt } from '../helpers/fake-libvirt.js';
import { captureLog } from '../helpers/log.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { baseLayerEntries, dockerLegacyArchive, ImageBuilder, tmp, writeFiles } from '../image/fixtures.js';
import { tar } from '../helpers/tar.js';
import { gzipSync } from 'node:zlib';

let root = '';
test.before.each(() => {
  root = realpathSync(tmp('ocivirt-settings-pass-'));
});
test.after.each(() => {
  rmSync(root, { recursive: true, force: true });
});

function setup() {
  const spool = join(root, 'spool');
  const state = join(root, 'state');
  mkdirSync(spool, { recursive: true });
  mkdirSync(join(root, 'allowed'));
  const captured = captureLog();
  const opts: SyncOptions = { spoolDir: spool, stateDir: state, log: captured.log, startPolicy: 'always', bindAllowList: [join(root, 'allowed')], retryDelayMs: 1, stopTimeoutMs: 10 };
  return { spool, state, opts, captured, port: new FakeLibvirt() };
}

const settings = (spool: string, name: string, value: unknown) => writeFileSync(join(spool, name), JSON.stringify(value));
// the process the domain runs (through the init shim: src/shim/domain.ts)
const domainOf = (port: FakeLibvirt, name: string) => withoutShim(parseDomainXml(port.domains.get(name)!.xml!));

function imageLayout(dir: string): string {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }], config: { Entrypoint: ['/bin/sh'], Cmd: ['-c', 'serve'], Env: ['PATH=/bin', 'MODE=image'] } });
  writeFiles(dir, b.layoutFiles([m]));
  return m.digest;
}

test('a bundle with settings: they win over config.json; recorded keys are said; a change redefines', async () => {
  const { spool, opts, port } = setup();
  writeMinimalBundle(join(spool, 'web'));
  settings(spool, 'web.ocivirt.json', { command: ['/bin/sh', 'from-settings'], env: { GREETING: 'hi' }, memory: '64M', restart: 'always', pids: 64 });
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error), []);
  assert.equal(r.plan.map((i) => `${i.action} ${i.domain}`), ['create web']);
  assert.match(r.plan[0]!.reason, /settings recorded, not yet in force: pids$/);
  const d = domainOf(port, 'web');
  assert.equal(d.os.initargs, ['from-settings']);
  assert.ok(d.os.initenv.some((e) => e.name === 'GREETING' && e.value === 'hi'));
  assert.is(d.memtune.hardLimit, 64 * 1024);
  assert.ok(d.metadata.ours!.annotations.some((a) => a.key === 'org.ocivirt.settings.restart' && a.value === 'always'));

  assert.equal((await syncOnce(port, opts)).plan.map((i) => i.action), ['nothing']);
  settings(spool, 'web.ocivirt.json', { command: ['/bin/sh', 'changed'], env: { GREETING: 'hi' }, memory: '64M', restart: 'always', pids: 64 });
  const changed = await syncOnce(port, opts);
  assert.equal(changed.plan.map((i) => i.action), ['update']);
  assert.equal(domainOf(port, 'web').os.initargs, ['changed']);
  // a settings file that changes nothing in the config still changes the desired digest
  settings(spool, 'web.ocivirt.json', { command: ['/bin/sh', 'changed'], env: { GREETING: 'hi' }, memory: '64M', restart: 'no', pids: 64 });
  assert.equal((await syncOnce(port, opts)).plan.map((i) => i.action), ['update']);
  rmSync(join(spool, 'web.ocivirt.json'));
  assert.equal((await syncOnce(port, opts)).plan.map((i) => i.action), ['update']);
  assert.equal(domainOf(port, 'web').os.initargs, ['v1']);
});

test('one image, many containers: one unpack per version, one tree each, the image entry image-only', async () => {
  const { spool, state, opts, port, captured } = setup();
  const digest = imageLayout(join(spool, 'base'));
  settings(spool, 'base.ocivirt.json', { imageOnly: true });
  for (const [n, mem] of [['one', '32M'], ['two', '48M'], ['three', '64M']] as const)
    settings(spool, `${n}.ocivirt.json`, { image: 'base', command: ['-c', `serve ${n}`], env: { WHO: n, MODE: null }, memory: mem });
  const spec: PassSpec = { scope: 'all', settled: () => true, known: new Map(), unpackEvents: true };
  const { results } = await syncPass(port, opts, spec);
  assert.equal(results.filter((r) => !r.ok).map((r) => r.error), []);
  assert.equal(results.map((r) => `${r.item.action} ${r.item.domain || '-'} ${r.item.entry}`), [
    'nothing - base',
    'create one one.ocivirt.json',
    'create three three.ocivirt.json',
    'create two two.ocivirt.json',
  ]);
  assert.match(results[0]!.item.reason, /image only/);
  assert.is(captured.events.filter((e) => e.event === 'image.verified').length, 1, 'the image was unpacked more than once');
  const version = digest.slice('sha256:'.length, 'sha256:'.length + 16);
  assert.equal(readdirSync(join(state, 'images', 'base')), [version]);
  for (const [n, mem] of [['one', 32], ['two', 48], ['three', 64]] as const) {
    const d = domainOf(port, n);
    assert.is(d.os.init, '/bin/sh');
    assert.equal(d.os.initargs, ['-c', `serve ${n}`]);
    assert.ok(d.os.initenv.some((e) => e.name === 'WHO' && e.value === n));
    assert.not.ok(d.os.initenv.some((e) => e.name === 'MODE'), 'MODE: null did not unset the image variable');
    assert.is(d.memtune.hardLimit, mem * 1024);
    assert.is(d.metadata.ours!.imageDigest, digest);
    // each container runs on its own tree, never on the shared one
    const rootfs = join(state, 'bundles', n, version, 'rootfs');
    assert.ok(existsSync(join(rootfs, 'bin', 'sh')));
    assert.ok(d.devices.filesystems.some((f) => f.source.dir === rootfs), JSON.stringify(d.devices.filesystems));
  }
  // a second pass unpacks nothing and changes nothing
  const again = await syncPass(port, opts, spec);
  assert.equal(again.results.map((r) => r.item.action), ['nothing', 'nothing', 'nothing', 'nothing']);
  assert.is(captured.events.filter((e) => e.event === 'image.verified').length, 1);

  // the containers gone, the shared tree goes too; the image entry itself stays in the spool
  for (const n of ['one', 'two', 'three']) rmSync(join(spool, `${n}.ocivirt.json`));
  const r = await syncOnce(port, opts);
  assert.equal(r.failed, []);
  assert.ok(r.collected.includes(join(state, 'images', 'base', version)), JSON.stringify(r.collected));
  assert.ok(existsSync(join(spool, 'base', 'index.json')));
});

test('bad settings fail their entry alone, one line naming the file and the key', async () => {
  const { spool, opts, port } = setup();
  imageLayout(join(spool, 'base'));
  writeMinimalBundle(join(spool, 'good'));
  writeMinimalBundle(join(spool, 'bundle'));
  const cases: Record<string, [unknown, RegExp]> = {
    typo: [{ image: 'base', memroy: '1G' }, /: memroy: unknown key \(did you mean 'memory'\?\)/],
    type: [{ image: 'base', cpus: '2' }, /: cpus: must be a number of CPUs/],
    far: [{ image: 'base', volumes: ['/etc:/host'] }, /: volumes\[0\]: host path "\/etc" resolves to \/etc, outside the bundle and the allowed mount sources/],
    missing: [{ image: 'nothing.tar' }, /: image: no entry "nothing\.tar" in the spool/],
    notimage: [{ image: 'bundle' }, /: image: "bundle" is a runtime bundle, not an image entry/],
    noref: [{ image: 'base', ref: 'v9' }, /: ref: no image with ref 'v9'/],
  };
  for (const [name, [value]] of Object.entries(cases)) settings(spool, `${name}.ocivirt.json`, value);
  const r = await syncOnce(port, opts);
  for (const [name, [, expected]] of Object.entries(cases)) {
    const f = r.failed.find((x) => x.item.entry === `${name}.ocivirt.json`);
    assert.ok(f, `${name}: did not fail`);
    assert.ok(f!.error!.startsWith(join(spool, `${name}.ocivirt.json`) + ': '), f!.error);
    assert.match(f!.error!, expected);
    assert.not.ok(f!.error!.includes('\n'));
  }
  assert.equal(r.failed.length, Object.keys(cases).length);
  assert.ok(port.domains.has('good') && port.domains.has('bundle') && port.domains.has('base'));
});

test('a multi-image archive (podman save -m | gzip, .tar.gz) is used through ref; without one it says to set ref', async () => {
  const { spool, opts, port } = setup();
  const images = ['one', 'two'].map((t) => ({ tags: [`example.com/${t}:1`], config: { Entrypoint: ['/bin/sh'], Cmd: ['-c', t] }, layers: [tar(baseLayerEntries())] }));
  writeFileSync(join(spool, 'all.tar.gz'), gzipSync(dockerLegacyArchive(images)));
  settings(spool, 'first.ocivirt.json', { image: 'all.tar.gz', ref: 'example.com/one:1' });
  settings(spool, 'second.ocivirt.json', { image: 'all.tar.gz', ref: 'example.com/two:1' });
  settings(spool, 'third.ocivirt.json', { image: 'all.tar.gz', ref: 'example.com/three:1' });
  const r = await syncOnce(port, opts);
  assert.equal(domainOf(port, 'first').os.initargs, ['-c', 'one']);
  assert.equal(domainOf(port, 'second').os.initargs, ['-c', 'two']);
  const fail = (entry: string) => r.failed.find((f) => f.item.entry === entry)?.error ?? '';
  assert.match(fail('third.ocivirt.json'), new RegExp(`^${spool}/third\\.ocivirt\\.json: ref: no image with ref 'example\\.com/three:1'; the image offers: example\\.com/one:1; example\\.com/two:1`));
  // the archive's own container has no ref: the message says where to put one
  assert.match(fail('all.tar.gz'), /all\.tar\.gz: holds 2 images; choose one with "ref" in all\.ocivirt\.json/);
  settings(spool, 'all.ocivirt.json', { ref: 'example.com/two:1' });
  const again = await syncOnce(port, opts);
  assert.equal(again.failed.map((f) => f.item.entry), ['third.ocivirt.json']);
  assert.equal(domainOf(port, 'all').os.initargs, ['-c', 'two']);
});

test('a runtime bundle cannot take image keys; an image-only entry holds nothing else', async () => {
  const { spool, opts, port } = setup();
  writeMinimalBundle(join(spool, 'web'));
  settings(spool, 'web.ocivirt.json', { ref: 'x' });
  imageLayout(join(spool, 'base'));
  settings(spool, 'base.ocivirt.json', { imageOnly: true, memory: '1G' });
  const r = await syncOnce(port, opts);
  assert.equal(r.failed.map((f) => f.error!.replace(spool, 'SPOOL')).sort(), [
    'SPOOL/base.ocivirt.json: memory: an image-only entry has no container of its own, so nothing else applies to it (each settings entry naming the image says how its container runs)',
    'SPOOL/web.ocivirt.json: ref: a runtime bundle is no image: only a settings file of an image entry, or one without an entry of its own, chooses an image',
  ]);
});

test('a per-entry pass over a changed settings file redefines its entry', async () => {
  const { spool, opts, port } = setup();
  writeMinimalBundle(join(spool, 'web'));
  await syncOnce(port, opts);
  settings(spool, 'web.ocivirt.json', { command: ['/bin/sh', 'later'] });
  const spec: PassSpec = { scope: new Set(['web.ocivirt.json']), settled: () => true, known: new Map(), unpackEvents: false };
  const { results } = await syncPass(port, opts, spec);
  assert.equal(results.map((r) => `${r.item.action} ${r.item.entry}`), ['update web']);
  // while its settings file is still being written, the entry is left as it is
  settings(spool, 'web.ocivirt.json', { command: ['/bin/sh', 'half'] });
  const settling = await syncPass(port, opts, { ...spec, settled: (n) => n !== 'web.ocivirt.json' });
  assert.equal(settling.results, []);
  assert.equal(settling.settling.map((s) => s.entry), ['web']);
  assert.equal(domainOf(port, 'web').os.initargs, ['later']);
});

test.run();
