/**
 * A spool entry is hostile: one that is a symlink, or becomes one between the scan and the read
 * or right after it is opened, must never lead ocivirt to read outside the spool. Every variant
 * has a "host" directory beside the spool holding an image (or bundle) of its own, marked
 * 'from the host'; what the spool holds is marked 'from the spool'. Reading the host's shows.
 */
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openImageSource } from '../../src/image/source.js';
import { unpackImage } from '../../src/image/unpack.js';
import { desiredDomain } from '../../src/reconcile/desired.js';
import { scanSpool, type SpoolEntry } from '../../src/spool/index.js';
import { entryTestHooks, openSpoolEntry, openSpoolFileIn } from '../../src/spool/read.js';
import { snapshotEntry } from '../../src/watch/complete.js';
import { file } from '../helpers/tar.js';
import { writeMinimalBundle } from '../helpers/bundle.js';
import { rejects } from '../helpers/rejects.js';
import { archiveOf, baseLayerEntries, ImageBuilder, scratchDirs, writeFiles } from '../image/fixtures.js';

const scratch = scratchDirs();
test.after.each(() => {
  delete entryTestHooks.afterOpen;
});

function imageFiles(marker: string): Map<string, Buffer> {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: [...baseLayerEntries(), file('marker', marker)] }] });
  return b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]);
}

/** A spool holding a layout `img`, an archive `arc.tar` and a bundle `web`; the same three kinds outside it. */
function setup() {
  const root = scratch();
  const spool = join(root, 'spool');
  const host = join(root, 'host');
  writeFiles(join(spool, 'img'), imageFiles('from the spool'));
  writeFileSync(join(spool, 'arc.tar'), archiveOf(imageFiles('from the spool')));
  writeMinimalBundle(join(spool, 'web'), 'from the spool');
  writeFiles(join(host, 'img'), imageFiles('from the host'));
  writeFileSync(join(host, 'arc.tar'), archiveOf(imageFiles('from the host')));
  writeMinimalBundle(join(host, 'web'), 'from the host');
  return { root, spool, host, state: join(root, 'state') };
}

/** Where `swap` moves `path` (a dot-name: the scan ignores it). */
const moved = (path: string) => join(dirname(path), `.${basename(path)}.old`);

/** Moves `path` aside and puts a symlink to `target` in its place, as a hostile spool writer would. */
function swap(path: string, target: string): void {
  renameSync(path, moved(path));
  symlinkSync(target, path);
}

/** Swaps `path` once, right after ocivirt opened it. */
function swapOnOpen(path: string, target: string): void {
  entryTestHooks.afterOpen = (p) => {
    if (p !== path) return;
    delete entryTestHooks.afterOpen;
    swap(path, target);
  };
}

const unpackedMarker = (bundleDir: string) => readFileSync(join(bundleDir, 'rootfs', 'marker'), 'utf8');

test('an entry that is a symlink at the scan is refused: layout, archive, bundle (and unpack refuses one too)', async () => {
  const { spool, host } = setup();
  for (const name of ['img', 'arc.tar', 'web']) swap(join(spool, name), join(host, name));
  const { entries, refused } = await scanSpool(spool);
  assert.equal(entries, []);
  assert.equal(refused.map((r) => [r.name, /is a symlink/.test(r.reason)]), [['arc.tar', true], ['img', true], ['web', true]]);
  for (const name of ['img', 'arc.tar']) await rejects(unpackImage(join(spool, name), join(scratch(), 'b')), /is a symlink/);
});

test('swapped for a symlink between the scan and the read: refused, nothing of the host unpacked', async () => {
  const { spool, host, state } = setup();
  const { entries } = await scanSpool(spool);
  assert.equal(entries.map((e) => e.name), ['arc.tar', 'img', 'web']);
  for (const e of entries) swap(e.path, join(host, e.name));
  for (const e of entries) await rejects(desiredDomain(e, { stateDir: state }, 1), new RegExp(`${e.name}: is a symlink`));
});

test('an image layout swapped right after it is opened is read from the directory that was opened', async () => {
  const { spool, host } = setup();
  swapOnOpen(join(spool, 'img'), join(host, 'img'));
  const r = await unpackImage(join(spool, 'img'), join(scratch(), 'b'));
  assert.is(unpackedMarker(r.bundleDir), 'from the spool');
});

test('an image archive swapped right after it is opened is read from the file that was opened', async () => {
  const { spool, host } = setup();
  swapOnOpen(join(spool, 'arc.tar'), join(host, 'arc.tar'));
  const r = await unpackImage(join(spool, 'arc.tar'), join(scratch(), 'b'));
  assert.is(unpackedMarker(r.bundleDir), 'from the spool');
});

test('a bundle swapped right after it is opened: config, rootfs and bind sources are those of the directory that was opened', async () => {
  const { spool, host } = setup();
  // a bind of a directory inside the bundle: allowed inside it, so it must be resolved inside the one read
  const web = join(spool, 'web');
  mkdirSync(join(web, 'data'));
  mkdirSync(join(host, 'web', 'data'));
  const config = JSON.parse(readFileSync(join(web, 'config.json'), 'utf8')) as Record<string, unknown>;
  config.mounts = [{ destination: '/data', type: 'bind', source: 'data', options: ['rbind'] }];
  writeFileSync(join(web, 'config.json'), JSON.stringify(config));
  const { entries } = await scanSpool(spool);
  const entry = entries.find((e) => e.name === 'web') as SpoolEntry;
  swapOnOpen(web, join(host, 'web'));
  const d = await desiredDomain(entry, {}, 1);
  const text = JSON.stringify(d.domain);
  assert.match(text, 'from the spool');
  assert.not.match(text, host, 'no host path in the domain');
  const sources = d.domain.devices.filesystems.map((f) => f.source.dir);
  assert.equal(sources.sort(), [join(moved(web), 'data'), join(moved(web), 'rootfs')]);
});

test('a bundle with settings swapped right after it is opened: a volume in the host directory is outside the bundle', async () => {
  const { spool, host } = setup();
  mkdirSync(join(host, 'web', 'data'));
  writeFileSync(join(spool, 'web.ocivirt.json'), JSON.stringify({ volumes: [`${join(host, 'web', 'data')}:/data`] }));
  const entry = (await scanSpool(spool)).entries.find((e) => e.name === 'web') as SpoolEntry;
  assert.ok(entry.settings, 'the settings file belongs to the bundle');
  swapOnOpen(join(spool, 'web'), join(host, 'web'));
  await rejects(desiredDomain(entry, {}, 1), /web\.ocivirt\.json: volumes\[0\]: host path .* outside the bundle/);
});

test('the scan reads a directory entry swapped right after it is opened as it was', async () => {
  const { spool, host } = setup();
  const before = (await scanSpool(spool)).entries.find((e) => e.name === 'web');
  swapOnOpen(join(spool, 'web'), join(host, 'img')); // a bundle becomes a link to a layout
  const after = (await scanSpool(spool)).entries.find((e) => e.name === 'web');
  assert.is(after?.kind, 'bundle');
  assert.is(after?.fingerprint, before?.fingerprint);
});

test('the watcher walks a directory entry swapped right after it is opened as it was', async () => {
  const { spool, host } = setup();
  swapOnOpen(join(spool, 'web'), join(host, 'img'));
  const swapped = await snapshotEntry(join(spool, 'web'));
  assert.is(swapped.signature, (await snapshotEntry(moved(join(spool, 'web')))).signature);
  assert.is.not(swapped.signature, (await snapshotEntry(join(host, 'img'))).signature);
});

test('inside a layout: blobs/ or index.json as a symlink to the host (absolute or relative) stays inside the layout', async () => {
  for (const [what, target] of [
    ['blobs', (host: string) => join(host, 'img', 'blobs')],
    ['blobs', () => '../../host/img/blobs'],
    ['index.json', (host: string) => join(host, 'img', 'index.json')],
    ['index.json', () => '../../host/img/index.json'],
  ] as const) {
    const { spool, host } = setup();
    // the host layout's index names the host image: a spool index would name blobs the spool has
    writeFileSync(join(spool, 'img', 'index.json'), readFileSync(join(host, 'img', 'index.json')));
    swap(join(spool, 'img', what), target(host));
    const expect = what === 'blobs' ? /is missing/ : /OCI layout without index\.json/;
    await rejects(unpackImage(join(spool, 'img'), join(scratch(), 'b')), expect);
    if (what === 'index.json') {
      const refused = (await scanSpool(spool)).refused.find((r) => r.name === 'img');
      assert.match(refused?.reason ?? '', /index\.json is a symlink/);
    }
  }
});

test('a file opened inside a held directory must be inside it, whatever a component was swapped for', async () => {
  const { spool, host } = setup();
  const dir = await openSpoolEntry(join(spool, 'img'), 'directory');
  try {
    // what a component swapped for a link out between a resolution and the open leads to
    await rejects(openSpoolFileIn(dir, `${dir.at}/../../host/img/oci-layout`), /leads out of its directory/);
    const inside = await openSpoolFileIn(dir, `${dir.at}/oci-layout`);
    await inside.handle.close();
  } finally {
    await dir.close();
  }
  // the image source holds its directory: the layout renamed away and a host layout put in its place changes nothing
  const source = await openImageSource(join(spool, 'img'));
  try {
    swap(join(spool, 'img'), join(host, 'img'));
    assert.equal(JSON.parse((await source.store.readSmall('oci-layout', 1024))!.toString()), { imageLayoutVersion: '1.0.0' });
    const index = (await source.store.readSmall('index.json', 1 << 20))!.toString();
    assert.is(index, readFileSync(join(moved(join(spool, 'img')), 'index.json'), 'utf8'));
    assert.is.not(index, readFileSync(join(host, 'img', 'index.json'), 'utf8'));
  } finally {
    await source.close();
  }
});

test.run();
