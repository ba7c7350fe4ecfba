/**
 * The hostile blob suite through the whole unpack: each case builds a bad image, runs
 * unpackImage over an existing bundle with a sentinel beside it, and asserts the error and that
 * the parent directory (old bundle included) is byte-for-byte what it was: no staging dir, no
 * half-made bundle, nothing replaced.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { InputError } from '../../src/errors.js';
import { unpackImage } from '../../src/image/unpack.js';
import { dir, file, tar } from '../helpers/tar.js';
import { archiveOf, baseLayerEntries, dockerLegacyArchive, ImageBuilder, sha256, writeFiles, type Desc, type LayerInput, scratchDirs } from './fixtures.js';
import { describeTree } from './tree.js';

const scratch = scratchDirs();

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const strip = ({ mediaType, digest, size }: Desc): Desc => ({ mediaType, digest, size });
const goodLayers = (): LayerInput[] => [{ entries: baseLayerEntries() }, { entries: [dir('srv/'), file('srv/a', 'x'.repeat(5000))] }];

/** A layout whose top-level descriptors `edit` may rewrite. */
function layout(layers: LayerInput[] = goodLayers(), edit?: (b: ImageBuilder, m: ReturnType<ImageBuilder['image']>) => Desc[]): { dir: string; m: ReturnType<ImageBuilder['image']> } {
  const b = new ImageBuilder();
  const m = b.image({ layers });
  return { dir: writeFiles(scratch(), b.layoutFiles(edit ? edit(b, m) : [strip(m)])), m };
}

const blob = (d: string, digest: string) => join(d, 'blobs/sha256', digest.slice(7));
function flip(path: string, at?: number): void {
  const b = readFileSync(path);
  const i = at ?? Math.floor(b.length / 2);
  b[i] = (b[i] as number) ^ 0x20;
  writeFileSync(path, b);
}
function append(path: string, extra: string): void {
  writeFileSync(path, Buffer.concat([readFileSync(path), Buffer.from(extra)]));
}
/** A manifest whose layer descriptors are rewritten. */
const withLayers = (f: (l: Desc, i: number) => Desc) => (b: ImageBuilder, m: ReturnType<ImageBuilder['image']>) => [
  b.json({ schemaVersion: 2, mediaType: MANIFEST, config: m.config, layers: m.layers.map(f) }, MANIFEST),
];

interface Case {
  name: string;
  image: () => string;
  expect: RegExp;
}

const cases: Case[] = [
  // digest and size tampering of every blob kind
  { name: 'index blob tampered', expect: /index blob .* does not match its digest/, image: () => {
    const b = new ImageBuilder();
    const m = b.image({ layers: goodLayers() });
    const idx = b.index([{ ...strip(m), platform: { os: 'linux', architecture: 'amd64' } }]);
    const d = writeFiles(scratch(), b.layoutFiles([idx]));
    flip(blob(d, idx.digest), 3);
    return d;
  } },
  { name: 'index blob resized', expect: /index blob .* is \d+ bytes, its descriptor says \d+/, image: () => {
    const b = new ImageBuilder();
    const m = b.image({ layers: goodLayers() });
    const idx = b.index([{ ...strip(m), platform: { os: 'linux', architecture: 'amd64' } }]);
    const d = writeFiles(scratch(), b.layoutFiles([idx]));
    append(blob(d, idx.digest), ' ');
    return d;
  } },
  { name: 'manifest blob tampered', expect: /manifest blob .* does not match its digest/, image: () => {
    const { dir: d, m } = layout();
    flip(blob(d, m.digest), 5);
    return d;
  } },
  { name: 'manifest blob resized', expect: /manifest blob .* is \d+ bytes, its descriptor says/, image: () => {
    const { dir: d, m } = layout();
    append(blob(d, m.digest), '\n');
    return d;
  } },
  { name: 'config blob tampered', expect: /config blob .* does not match its digest/, image: () => {
    const { dir: d, m } = layout();
    flip(blob(d, m.config.digest), 4);
    return d;
  } },
  { name: 'config blob resized', expect: /config blob .* is \d+ bytes, its descriptor says/, image: () => {
    const { dir: d, m } = layout();
    append(blob(d, m.config.digest), ' ');
    return d;
  } },
  { name: 'layer blob tampered (gzip)', expect: /layer 2\/2 \(sha256:[0-9a-f]{12}\)/, image: () => {
    const { dir: d, m } = layout();
    flip(blob(d, m.layers[1]!.digest));
    return d;
  } },
  { name: 'layer blob tampered (plain tar, same size)', expect: /layer 2\/2 .* blob does not match its digest/, image: () => {
    const { dir: d, m } = layout([{ entries: baseLayerEntries() }, { entries: [file('srv', 'x'.repeat(3000))], compression: 'none' }]);
    flip(blob(d, m.layers[1]!.digest), 700);
    return d;
  } },
  { name: 'layer blob tampered in a tar header (the applier trips first; the digest is blamed)', expect: /layer 2\/2 .* blob does not match its digest/, image: () => {
    const { dir: d, m } = layout([{ entries: baseLayerEntries() }, { entries: [file('srv', 'x'.repeat(3000))], compression: 'none' }]);
    flip(blob(d, m.layers[1]!.digest), 10); // inside the first header's name: its checksum now fails
    return d;
  } },
  { name: 'layer descriptor smaller than the blob', expect: /layer 1\/2 .* blob is larger than the \d+ bytes its descriptor declares/, image: () =>
    layout(goodLayers(), withLayers((l, i) => (i === 0 ? { ...l, size: l.size - 1 } : l))).dir },
  { name: 'layer descriptor larger than the blob', expect: /layer 1\/2 .* blob is truncated: \d+ of the \d+ bytes/, image: () =>
    layout(goodLayers(), withLayers((l, i) => (i === 0 ? { ...l, size: l.size + 100 } : l))).dir },
  { name: 'diffID mismatch', expect: /layer 2\/2 .* uncompressed content \(diffID sha256:e{64}\) does not match its digest/, image: () =>
    layout([{ entries: baseLayerEntries() }, { entries: [file('x')], diffId: `sha256:${'e'.repeat(64)}` }]).dir },
  // compressed streams, digests recomputed so only the stream itself is wrong
  { name: 'gzip truncated', expect: /layer 2\/2 .*: corrupt gzip stream/, image: () =>
    layout([{ entries: baseLayerEntries() }, { entries: [file('x', 'y'.repeat(9000))], mangle: (b) => b.subarray(0, b.length - 12) }]).dir },
  { name: 'gzip with a second member cut short (not trailing bytes: it starts as a member)', expect: /layer 2\/2 .*: corrupt gzip stream: unexpected end of file/, image: () =>
    layout([{ entries: baseLayerEntries() }, { entries: [file('x')], mangle: (b) => Buffer.concat([b, b.subarray(0, b.length - 12)]) }]).dir },
  { name: 'zstd truncated', expect: /layer 2\/2 .*: corrupt zstd stream/, image: () =>
    layout([{ entries: baseLayerEntries() }, { entries: [file('x', 'y'.repeat(9000))], compression: 'zstd', mangle: (b) => b.subarray(0, b.length - 5) }]).dir },
  { name: 'zstd frame demanding a 2 GiB window (memory bomb)', expect: /layer 2\/2 .*: corrupt zstd stream: Frame requires too much memory/, image: () =>
    // frame header: window descriptor 0xa8 = 2^31 bytes; then one raw block of 1 byte
    layout([{ entries: baseLayerEntries() }, { tar: Buffer.alloc(0), compression: 'zstd', mangle: () => Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x09, 0x00, 0x00, 0x41]) }]).dir },
  { name: 'tar inside gzip truncated (digest and diffID recomputed)', expect: /layer 2\/2 .*(truncated|ends)/, image: () => {
    const raw = tar([file('x', 'z'.repeat(5000))]).subarray(0, 1500);
    return layout([{ entries: baseLayerEntries() }, { tar: raw }]).dir;
  } },
  { name: 'gzip media type on a zstd blob', expect: /says gzip, but the blob is zstd/, image: () =>
    layout([{ entries: baseLayerEntries(), compression: 'zstd', mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }]).dir },
  // digests that must never become paths
  { name: 'unsafe digest sha256:../../x in index.json', expect: /malformed digest "sha256:..\/..\/x"/, image: () => {
    const d = layout().dir;
    writeFileSync(join(d, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MANIFEST, digest: 'sha256:../../x', size: 1 }] }));
    return d;
  } },
  { name: 'unsafe digest in a layer descriptor', expect: /layers\[1\].digest: malformed digest/, image: () =>
    layout(goodLayers(), withLayers((l, i) => (i === 1 ? { ...l, digest: 'sha256:../../../../../../etc/shadow' } : l))).dir },
  { name: 'unsafe digest as config', expect: /config.digest: (malformed digest|digest .* is not a valid sha256)/, image: () =>
    layout(goodLayers(), (b, m) => [b.json({ schemaVersion: 2, mediaType: MANIFEST, config: { ...m.config, digest: `sha256:${'a'.repeat(62)}/.` }, layers: m.layers }, MANIFEST)]).dir },
  { name: 'unsafe diff_id', expect: /rootfs.diff_ids\[0\]: malformed digest/, image: () => {
    const b = new ImageBuilder();
    const m = b.image({ layers: [{ entries: [file('a')] }] });
    const cfg = b.json({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/x'] }, rootfs: { type: 'layers', diff_ids: ['sha256:/etc/passwd'] } }, 'application/vnd.oci.image.config.v1+json');
    return writeFiles(scratch(), b.layoutFiles([b.json({ schemaVersion: 2, mediaType: MANIFEST, config: cfg, layers: m.layers }, MANIFEST)]));
  } },
  { name: 'unknown digest algorithm', expect: /unsupported algorithm 'md5'/, image: () =>
    layout(goodLayers(), withLayers((l, i) => (i === 0 ? { ...l, digest: `md5:${'0'.repeat(32)}` } : l))).dir },
  { name: 'uppercase hex (not canonical)', expect: /not a valid sha256 value/, image: () =>
    layout(goodLayers(), withLayers((l, i) => (i === 0 ? { ...l, digest: l.digest.toUpperCase().replace('SHA256', 'sha256') } : l))).dir },
  { name: 'index fan-out bomb (every level repeats one nested index 1000 times)', expect: /no manifest for platform linux\/amd64|more than 64 nested indexes/, image: () => {
    const b = new ImageBuilder();
    let level = b.index([]);
    for (let i = 0; i < 6; i++) level = b.index(Array.from({ length: 1000 }, () => level));
    return writeFiles(scratch(), b.layoutFiles([level]));
  } },
  { name: 'index fan-out bomb (distinct nested indexes)', expect: /more than 64 nested indexes/, image: () => {
    const b = new ImageBuilder();
    const leaves = Array.from({ length: 100 }, (_, i) => b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [], n: i }, 'application/vnd.oci.image.index.v1+json'));
    return writeFiles(scratch(), b.layoutFiles([b.index(leaves)]));
  } },
  { name: 'a manifest with 5000 layers (all the same blob)', expect: /has 5000 layers, more than the 1000 we unpack/, image: () =>
    layout([{ entries: [file('a')] }], (b, m) => [b.json({ schemaVersion: 2, mediaType: MANIFEST, config: b.json({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/x'] }, rootfs: { type: 'layers', diff_ids: Array(5000).fill(m.diffIds[0]) } }, 'application/vnd.oci.image.config.v1+json'), layers: Array(5000).fill(m.layers[0]) }, MANIFEST)]).dir },
  // media types
  { name: 'unknown layer media type', expect: /unsupported layer media type "application\/vnd.in-toto\+json"/, image: () =>
    layout([{ entries: baseLayerEntries() }, { entries: [file('a')], mediaType: 'application/vnd.in-toto+json' }]).dir },
  { name: 'unknown manifest media type', expect: /unsupported media type "application\/x-thing"/, image: () =>
    layout(goodLayers(), (_b, m) => [{ ...strip(m), mediaType: 'application/x-thing' }]).dir },
  { name: 'manifest that is an index in disguise', expect: /says mediaType .*index.* but was referenced as .*manifest/, image: () =>
    layout(goodLayers(), (b) => [{ ...b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }, 'x'), mediaType: MANIFEST }]).dir },
  // archives
  { name: 'oci-archive with a tampered layer', expect: /layer 2\/2 .*/, image: () => {
    const b = new ImageBuilder();
    const m = b.image({ layers: goodLayers() });
    const files = b.layoutFiles([strip(m)]);
    const key = `blobs/sha256/${m.layers[1]!.digest.slice(7)}`;
    const bytes = Buffer.from(files.get(key) as Buffer);
    const mid = Math.floor(bytes.length / 2);
    bytes[mid] = (bytes[mid] as number) ^ 1;
    files.set(key, bytes);
    const p = join(scratch(), 'x.tar');
    writeFileSync(p, archiveOf(files));
    return p;
  } },
  { name: 'docker save with a layer that does not match its diffID', expect: /layer 2\/2 \([0-9a-f]{64}\/layer.tar\) uncompressed content \(diffID/, image: () => {
    const p = join(scratch(), 'd.tar');
    const l2 = tar([file('a', 'b')]);
    const archive = dockerLegacyArchive([{ tags: ['x:1'], layers: [tar(baseLayerEntries()), l2] }]);
    // change one byte of layer 2's file data inside the archive (the config keeps the old diffID)
    const at = archive.indexOf(Buffer.from('b\0\0\0'), archive.indexOf(l2.subarray(0, 100)) + 512);
    archive[at] = 0x63;
    writeFileSync(p, archive);
    return p;
  } },
  { name: 'docker save with a corrupt compressed layer', expect: /layer 1\/1 .*corrupt gzip stream/, image: () => {
    const p = join(scratch(), 'd.tar');
    const cfgObj = { architecture: 'amd64', os: 'linux', config: { Cmd: ['/x'] }, rootfs: { type: 'layers', diff_ids: [`sha256:${sha256(tar([file('a')]))}`] } };
    const cfg = JSON.stringify(cfgObj);
    const gz = gzipSync(tar([file('a')])).subarray(0, 30);
    writeFileSync(p, tar([file(`${sha256(cfg)}.json`, cfg), file('l/layer.tar', gz), file('manifest.json', JSON.stringify([{ Config: `${sha256(cfg)}.json`, RepoTags: ['x:1'], Layers: ['l/layer.tar'] }]))]));
    return p;
  } },
];

for (const c of cases) {
  test(`hostile: ${c.name}`, async () => {
    const parent = scratch();
    writeFileSync(join(parent, 'sentinel'), 'must stay byte-for-byte');
    const target = join(parent, 'bundle');
    await unpackImage(layout().dir, target); // an existing bundle the failed run must not touch
    const before = describeTree(parent);
    const src = c.image();
    try {
      await unpackImage(src, target, { force: true });
      assert.unreachable('the unpack should have failed');
    } catch (e) {
      assert.instance(e, InputError, `expected InputError, got ${(e as Error)?.stack}`);
      assert.match((e as Error).message, c.expect);
    }
    assert.equal(describeTree(parent), before, 'nothing beside the target changed and the old bundle is intact');
  });
}

test.run();
