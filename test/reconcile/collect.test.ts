/**
 * The image-bundle collection decision: a version goes only when no definition (inactive or
 * live) names it and it is not the newest of a domain the pass keeps; a domain directory goes
 * whole only when its domain is gone and nothing names anything under it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decideCollection, refersTo, type DomainBundles } from '../../src/reconcile/collect.js';

const B = '/var/lib/ocivirt/bundles';
const V1 = '1111111111111111';
const V2 = '2222222222222222';
const V3 = '3333333333333333';

const fs = (path: string) => `<domain type='lxc'><devices><filesystem type='mount'><source dir='${path}'/><target dir='/'/></filesystem></devices></domain>`;

function tree(domain: string, ...versions: [string, number][]): DomainBundles {
  return { domain, versions: versions.map(([name, unpackedAt]) => ({ name, unpackedAt })) };
}

test('refersTo: the path itself or below it, not a longer sibling name', () => {
  assert.ok(refersTo(fs(`${B}/web/${V1}/rootfs`), `${B}/web/${V1}`));
  assert.ok(refersTo(fs(`${B}/web/${V1}`), `${B}/web/${V1}`));
  assert.ok(refersTo(`<source dir="${B}/web/${V1}"/>`, `${B}/web/${V1}`));
  assert.ok(refersTo(`<x>${B}/web</x>`, `${B}/web`));
  assert.not.ok(refersTo(fs(`${B}/web-2/${V1}/rootfs`), `${B}/web`));
  assert.not.ok(refersTo(fs(`${B}/web/${V1}0/rootfs`), `${B}/web/${V1}`));
  assert.not.ok(refersTo(fs(`${B}/web/${V2}/rootfs`), `${B}/web/${V1}`));
});

test('refersTo: a path with XML specials is found in its escaped form', () => {
  const odd = `/srv/a&b's/bundles/web/${V1}`;
  assert.ok(refersTo(`<source dir='/srv/a&amp;b&apos;s/bundles/web/${V1}/rootfs'/>`, odd));
});

test('next-start: the running domain still uses the old version (live XML), the new one is defined: both kept', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2])],
    inUse: new Set(['web']),
    definitions: [fs(`${B}/web/${V2}/rootfs`), fs(`${B}/web/${V1}/rootfs`)],
  });
  assert.equal(d, { domains: [], versions: [] });
});

test('stopped (inactive = live = new version): the old version goes', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2])],
    inUse: new Set(['web']),
    definitions: [fs(`${B}/web/${V2}/rootfs`), fs(`${B}/web/${V2}/rootfs`)],
  });
  assert.equal(d, { domains: [], versions: [{ domain: 'web', version: V1 }] });
});

test('the newest version of a kept domain stays even before its define (a failed or pending define)', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 5], [V3, 3])],
    inUse: new Set(['web']),
    definitions: [fs(`${B}/web/${V1}/rootfs`)],
  });
  assert.equal(d.versions, [{ domain: 'web', version: V3 }]);
});

test('a spool reverted to an older version that is defined again: the defined one stays, not only the newest', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2])],
    inUse: new Set(['web']),
    definitions: [fs(`${B}/web/${V1}/rootfs`)],
  });
  assert.equal(d.versions, []);
});

test('remove policy keep: the entry left, its domain is not in the pass, but its definition keeps its version', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2])],
    inUse: new Set(),
    definitions: [fs(`${B}/web/${V2}/rootfs`)],
  });
  assert.equal(d, { domains: [], versions: [{ domain: 'web', version: V1 }] });
});

test('a domain undefined but still running (transient) keeps its version through its live XML', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1])],
    inUse: new Set(),
    definitions: [fs(`${B}/web/${V1}/rootfs`)],
  });
  assert.equal(d, { domains: [], versions: [] });
});

test('a domain gone and nothing naming its directory: the directory goes whole', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2]), tree('db', [V1, 1])],
    inUse: new Set(['db']),
    definitions: [fs(`${B}/db/${V1}/rootfs`)],
  });
  assert.equal(d, { domains: ['web'], versions: [] });
});

test('another domain (renamed or edited by hand) pointing into a directory keeps what it uses', () => {
  const d = decideCollection({
    bundlesDir: B,
    trees: [tree('web', [V1, 1], [V2, 2])],
    inUse: new Set(['other']),
    definitions: [fs(`${B}/web/${V1}/rootfs`)],
  });
  assert.equal(d, { domains: [], versions: [{ domain: 'web', version: V2 }] });
});

test('without definitions the decision is the upper bound: a steady state has nothing to read libvirt for', () => {
  const steady = decideCollection({ bundlesDir: B, trees: [tree('web', [V2, 2]), tree('db', [V1, 1])], inUse: new Set(['web', 'db']), definitions: [] });
  assert.equal(steady, { domains: [], versions: [] });
  const changed = decideCollection({ bundlesDir: B, trees: [tree('web', [V1, 1], [V2, 2])], inUse: new Set(['web']), definitions: [] });
  assert.equal(changed.versions, [{ domain: 'web', version: V1 }]);
});

test('a state directory whose bundles cannot be listed is reported, not taken for "no image bundles"', async () => {
  const { collectImageBundles } = await import('../../src/reconcile/collect.js');
  const { FakeLibvirt } = await import('../helpers/fake-libvirt.js');
  const { captureLog } = await import('../helpers/log.js');
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const state = mkdtempSync(join(tmpdir(), 'ocivirt-test-collect-'));
  try {
    writeFileSync(join(state, 'bundles'), 'not a directory'); // readdir: ENOTDIR
    const { log, events } = captureLog();
    assert.equal(await collectImageBundles(new FakeLibvirt(), state, [], log), []);
    const warned = events.find((e) => e.event === 'image.warning');
    assert.ok(warned, 'a warning says the bundles were not collected');
    assert.match(String(warned!.err), 'ENOTDIR');
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});

test.run();
