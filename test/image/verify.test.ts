/**
 * Hostile blobs at the image level: every JSON blob kind tampered in digest and size, unsafe and
 * unknown digests, media-type confusion, oversized documents, and layer streams that are
 * tampered, truncated, padded with garbage or mislabelled. Each asserts the error names the blob.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { InputError } from '../../src/errors.js';
import { parseDigest } from '../../src/image/digest.js';
import { openLayerStream } from '../../src/image/layer-stream.js';
import { parsePlatform } from '../../src/image/platform.js';
import { resolveImage } from '../../src/image/resolve.js';
import { openImageSource } from '../../src/image/source.js';
import { dir, file, tar } from '../helpers/tar.js';
import { archiveOf, baseLayerEntries, ImageBuilder, sha256, writeFiles, type Desc, type LayerInput, scratchDirs, expectInputError } from './fixtures.js';

const scratch = scratchDirs();


const platform = parsePlatform('linux/amd64');

async function resolve(path: string, maxJsonBytes?: number) {
  const source = await openImageSource(path, maxJsonBytes ? { maxJsonBytes } : {});
  try {
    return await resolveImage(source, { platform, explicitVariant: false });
  } finally {
    await source.close();
  }
}

/**
 * Resolves then streams every layer to the end, as the unpacker would (minus the applier);
 * `trailing` gets, per layer, the bytes reported after its compressed stream.
 */
async function streamAll(path: string, trailing: number[] = []): Promise<Buffer[]> {
  const source = await openImageSource(path);
  try {
    const image = await resolveImage(source, { platform, explicitVariant: false });
    const out: Buffer[] = [];
    for (const layer of image.layers) {
      const s = await openLayerStream(source, layer, { onTrailing: (n) => (trailing[layer.index] = n) });
      const chunks: Buffer[] = [];
      const consumed = (async () => {
        for await (const c of s.output) chunks.push(c as Buffer);
      })();
      const [v, c] = await Promise.allSettled([s.verified, consumed]);
      if (v.status === 'rejected') throw v.reason;
      if (c.status === 'rejected') throw c.reason;
      out.push(Buffer.concat(chunks));
    }
    return out;
  } finally {
    await source.close();
  }
}

const strip = ({ mediaType, digest, size }: Desc): Desc => ({ mediaType, digest, size });

function layoutWith(layers: LayerInput[], edit?: (b: ImageBuilder, m: ReturnType<ImageBuilder['image']>) => Desc[]) {
  const b = new ImageBuilder();
  const m = b.image({ layers });
  const top = edit ? edit(b, m) : [strip(m)];
  return { b, m, dir: writeFiles(scratch(), b.layoutFiles(top)) };
}

const blobFile = (d: string, digest: string) => join(d, 'blobs/sha256', digest.slice(7));
function flipByte(path: string, at?: number): void {
  const b = readFileSync(path);
  const i = at ?? Math.floor(b.length / 2);
  b[i] = (b[i] as number) ^ 0x20;
  writeFileSync(path, b);
}

// ---- digests ----

test('digests: unknown algorithms and unsafe encoded parts are refused before any path is built', () => {
  const bad: [string, RegExp][] = [
    ['sha256:../../x', /malformed digest/],
    ['sha256:../../../../etc/passwd', /malformed digest/],
    [`sha256:${'A'.repeat(64)}`, /not a valid sha256 value/],
    [`sha256:${'a'.repeat(63)}`, /not a valid sha256 value/],
    [`sha256:${'a'.repeat(64)}/x`, /malformed digest/],
    [`md5:${'a'.repeat(32)}`, /unsupported algorithm 'md5'/],
    [`sha384:${'a'.repeat(96)}`, /unsupported algorithm 'sha384'/],
    [`blake3:${'a'.repeat(64)}`, /unsupported algorithm 'blake3'/],
    ['sha256', /malformed digest/],
    ['', /malformed digest/],
  ];
  for (const [value, pattern] of bad) {
    assert.throws(() => parseDigest(value, { field: 'digest' }), (e: Error) => e instanceof InputError && pattern.test(e.message), value);
  }
  assert.is(parseDigest(`sha512:${'b'.repeat(128)}`).algorithm, 'sha512');
});

test('an index.json entry with an unsafe digest is refused while reading index.json', async () => {
  const { b, dir: d } = layoutWith([{ entries: [file('a')] }]);
  writeFileSync(join(d, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:../../../../etc/passwd', size: 10 }] }));
  void b;
  await expectInputError(resolve(d), /index.json: manifests\[0\].digest: malformed digest "sha256:..\/..\/..\/..\/etc\/passwd"/);
});

test('a layer descriptor with an unknown digest algorithm is refused', async () => {
  const { dir: d } = layoutWith([{ entries: [file('a')] }], (b, m) => {
    const manifest = b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: m.config, layers: [{ ...m.layers[0], digest: `md5:${'a'.repeat(32)}` }] }, 'application/vnd.oci.image.manifest.v1+json');
    return [manifest];
  });
  await expectInputError(resolve(d), /layers\[0\].digest: digest "md5:a+" uses an unsupported algorithm 'md5'/);
});

// ---- JSON blobs: digest and size tampering of every kind ----

test('manifest blob tampered (digest) is refused', async () => {
  const { m, dir: d } = layoutWith([{ entries: [file('a')] }]);
  const p = blobFile(d, m.digest);
  flipByte(p, 5);
  await expectInputError(resolve(d), /manifest blob sha256:[0-9a-f]{64} does not match its digest/);
});

test('manifest blob with a different size than its descriptor is refused', async () => {
  const { m, dir: d } = layoutWith([{ entries: [file('a')] }]);
  writeFileSync(blobFile(d, m.digest), Buffer.concat([readFileSync(blobFile(d, m.digest)), Buffer.from(' ')]));
  await expectInputError(resolve(d), new RegExp(`manifest blob ${m.digest} is ${m.size + 1} bytes, its descriptor says ${m.size}`));
});

test('config blob tampered (digest) and resized are refused', async () => {
  const { m, dir: d } = layoutWith([{ entries: [file('a')] }]);
  flipByte(blobFile(d, m.config.digest), 3);
  await expectInputError(resolve(d), /config blob sha256:[0-9a-f]{64} does not match its digest/);
  writeFileSync(blobFile(d, m.config.digest), Buffer.from('{}'));
  await expectInputError(resolve(d), new RegExp(`config blob ${m.config.digest} is 2 bytes, its descriptor says ${m.config.size}`));
});

test('index blob tampered (digest) and resized are refused', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: [file('a')] }] });
  const idx = b.index([{ ...strip(m), platform: { os: 'linux', architecture: 'amd64' } }]);
  const d = writeFiles(scratch(), b.layoutFiles([idx]));
  flipByte(blobFile(d, idx.digest), 4);
  await expectInputError(resolve(d), /index blob sha256:[0-9a-f]{64} does not match its digest/);
  writeFileSync(blobFile(d, idx.digest), '{}');
  await expectInputError(resolve(d), /index blob .* is 2 bytes, its descriptor says/);
});

test('a descriptor lying about size (smaller and larger than the blob) is refused', async () => {
  for (const delta of [-1, 1]) {
    const { dir: d } = layoutWith([{ entries: [file('a')] }], (_b, m) => [{ ...strip(m), size: m.size + delta }]);
    await expectInputError(resolve(d), /manifest blob .* bytes, its descriptor says/);
  }
});

test('a missing blob is named', async () => {
  const { m, dir: d } = layoutWith([{ entries: [file('a')] }]);
  rmSync(blobFile(d, m.layers[0]!.digest));
  await expectInputError(resolve(d), /layer 1\/1 \(sha256:[0-9a-f]{12}\) blob sha256:[0-9a-f]{64} is missing/);
});

test('JSON documents above the size cap are refused before they are read', async () => {
  const { dir: d } = layoutWith([{ entries: [file('a')] }]);
  await expectInputError(resolve(d, 64), /over the 64-byte limit for JSON documents|larger than the 64-byte limit/);
});

test('a manifest claiming to be an index (embedded mediaType mismatch) is refused', async () => {
  const { dir: d } = layoutWith([{ entries: [file('a')] }], (b, m) => {
    const mm = b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', config: m.config, layers: m.layers, manifests: [] }, 'x');
    return [{ ...mm, mediaType: 'application/vnd.oci.image.manifest.v1+json' }];
  });
  await expectInputError(resolve(d), /says mediaType "application\/vnd.oci.image.index.v1\+json" but was referenced as "application\/vnd.oci.image.manifest.v1\+json"/);
});

test('an unknown layer media type is refused by name, listing the supported ones', async () => {
  const { dir: d } = layoutWith([{ entries: [file('a')], mediaType: 'application/vnd.example.layer.v1.squashfs' }]);
  await expectInputError(resolve(d), /unsupported layer media type "application\/vnd.example.layer.v1.squashfs" \(supported: application\/vnd.oci.image.layer.v1.tar,/);
});

test('a config whose diff_ids count differs from the layers is refused', async () => {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: [file('a')] }, { entries: [file('b')] }] });
  const cfg = b.json({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [m.diffIds[0]] } }, 'application/vnd.oci.image.config.v1+json');
  const mm = b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: m.layers }, 'application/vnd.oci.image.manifest.v1+json');
  const d = writeFiles(scratch(), b.layoutFiles([strip(mm)]));
  await expectInputError(resolve(d), /manifest has 2 layers but the config has 1 diff_ids/);
});

test('an unknown config media type (an artifact, not an image) is refused', async () => {
  const b = new ImageBuilder();
  const cfg = b.json({}, 'application/vnd.example.artifact');
  const mm = b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: [] }, 'application/vnd.oci.image.manifest.v1+json');
  const d = writeFiles(scratch(), b.layoutFiles([strip(mm)]));
  await expectInputError(resolve(d), /unsupported config media type "application\/vnd.example.artifact"/);
});

test('Docker schema 1 manifests are refused with advice', async () => {
  const b = new ImageBuilder();
  const s1 = b.json({ schemaVersion: 1 }, 'application/vnd.docker.distribution.manifest.v1+prettyjws');
  const d = writeFiles(scratch(), b.layoutFiles([s1]));
  await expectInputError(resolve(d), /schema 1 manifests are not supported/);
});

// ---- layer streams ----

const payload = () => tar([dir('d/'), file('d/f', 'x'.repeat(100_000)), file('g', 'hello')]);

test('plain, gzip and zstd layers stream to the same uncompressed bytes (also from an oci-archive)', async () => {
  const raw = payload();
  const { b, m, dir: d } = layoutWith([
    { tar: raw, compression: 'none' },
    { tar: raw, compression: 'gzip' },
    { tar: raw, compression: 'zstd' },
  ]);
  for (const out of await streamAll(d)) assert.ok(out.equals(raw));
  const p = join(scratch(), 'a.tar');
  writeFileSync(p, archiveOf(b.layoutFiles([strip(m)])));
  for (const out of await streamAll(p)) assert.ok(out.equals(raw));
});

test('Docker gzip media type holding an uncompressed tar is sniffed, as Docker does', async () => {
  const raw = payload();
  const { dir: d } = layoutWith([{ tar: raw, compression: 'none', mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' }]);
  assert.ok((await streamAll(d))[0]?.equals(raw));
});

test('an OCI media type that lies about compression is refused by name', async () => {
  const { dir: d } = layoutWith([{ tar: payload(), compression: 'zstd', mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }]);
  await expectInputError(streamAll(d), /media type application\/vnd.oci.image.layer.v1.tar\+gzip says gzip, but the blob is zstd/);
});

for (const c of ['none', 'gzip', 'zstd'] as const) {
  test(`${c} layer: a tampered blob fails its digest check`, async () => {
    const { m, dir: d } = layoutWith([{ tar: payload(), compression: c }]);
    flipByte(blobFile(d, m.layers[0]!.digest));
    // the tamper may also break the decompressor first; either way the layer is named
    await expectInputError(streamAll(d), /layer 1\/1 \(sha256:[0-9a-f]{12}\)/);
  });

  test(`${c} layer: the diffID must match the uncompressed bytes`, async () => {
    const { dir: d } = layoutWith([{ tar: payload(), compression: c, diffId: `sha256:${'0'.repeat(64)}` }]);
    await expectInputError(streamAll(d), /layer 1\/1 .* uncompressed content \(diffID sha256:0{64}\) does not match its digest: content hashes to sha256:/);
  });
}

test('a layer blob longer or shorter than its descriptor fails while streaming', async () => {
  for (const delta of [-10, 10]) {
    const { dir: d } = layoutWith([{ tar: payload(), compression: 'gzip' }], (b, m) => {
      const l = { ...m.layers[0]!, size: m.layers[0]!.size + delta };
      return [b.json({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: m.config, layers: [l] }, 'application/vnd.oci.image.manifest.v1+json')];
    });
    await expectInputError(streamAll(d), delta < 0 ? /blob is larger than the \d+ bytes its descriptor declares/ : /blob is truncated: \d+ of the \d+ bytes/);
  }
});

const truncate = (b: Buffer) => b.subarray(0, b.length - 20);

for (const c of ['gzip', 'zstd'] as const) {
  test(`${c} layer truncated (digest recomputed to match) fails as a corrupt stream`, async () => {
    const { dir: d } = layoutWith([{ tar: payload(), compression: c, mangle: truncate }]);
    await expectInputError(streamAll(d), new RegExp(`layer 1/1 .*: corrupt ${c} stream`));
  });

}

test('bytes after the last gzip member or zstd frame are ignored and counted, whatever they are (digest recomputed to match)', async () => {
  const raw = payload();
  const after: [string, Buffer][] = [
    ['text', Buffer.from('this is trailing garbage')],
    ['zeros', Buffer.alloc(4096)],
    ['one byte of a gzip magic', Buffer.from([0x1f])],
    ['a zip header', Buffer.from('PK\x03\x04rest of a zip')],
  ];
  for (const c of ['gzip', 'zstd'] as const)
    for (const [what, bytes] of after) {
      const { dir: d } = layoutWith([{ tar: raw, compression: c, mangle: (b) => Buffer.concat([b, bytes]) }]);
      const trailing: number[] = [];
      const [out] = await streamAll(d, trailing);
      assert.ok(out?.equals(raw), `${c}, ${what}: the whole stream is decompressed`);
      assert.equal(trailing, [bytes.length], `${c}, ${what}`);
    }
});

test('several gzip members, then trailing bytes: every member is decompressed, only the rest is trailing', async () => {
  const raw = payload();
  const cuts = [0, 1, Math.floor(raw.length / 3), raw.length - 1];
  const members = cuts.map((at, i) => gzipSync(raw.subarray(at, cuts[i + 1] ?? raw.length), { level: i % 2 ? 1 : 9 }));
  const { dir: d } = layoutWith([{ tar: raw, compression: 'gzip', mangle: () => Buffer.concat([...members, Buffer.from('tail')]) }]);
  const trailing: number[] = [];
  assert.ok((await streamAll(d, trailing))[0]?.equals(raw));
  assert.equal(trailing, [4]);
});

test('a gzip stream that is cut short or corrupted in any member is still refused, trailing bytes or not', async () => {
  const raw = payload();
  const one = gzipSync(raw.subarray(0, 3000));
  const two = gzipSync(raw.subarray(3000));
  const flip = (b: Buffer, from: number) => {
    const x = Buffer.from(b);
    x[x.length - from] = (x[x.length - from] as number) ^ 0x01;
    return x;
  };
  const bad: [string, Buffer, RegExp][] = [
    ['second member truncated in its data', Buffer.concat([one, two.subarray(0, 40)]), /unexpected end of file/],
    ['second member truncated in its trailer', Buffer.concat([one, two.subarray(0, two.length - 3)]), /unexpected end of file/],
    ['second member truncated in its header', Buffer.concat([one, two.subarray(0, 5)]), /unexpected end of file/],
    ['CRC-32 of the first member wrong', Buffer.concat([flip(one, 6), two]), /CRC-32 of a member does not match/],
    ['length of the last member wrong', Buffer.concat([one, flip(two, 2), Buffer.from('tail')]), /length of a member does not match/],
    ['a member header with an unknown method', Buffer.concat([one, Buffer.from([0x1f, 0x8b, 7]), two.subarray(3)]), /unknown compression method 7/],
    ['a corrupt second member', Buffer.concat([one, two.subarray(0, 10), Buffer.alloc(40, 0xff), two.subarray(50)]), /invalid|incorrect|distance/],
  ];
  for (const [what, blob, reason] of bad) {
    const { dir: d } = layoutWith([{ tar: raw, compression: 'gzip', mangle: () => blob }]);
    await expectInputError(streamAll(d), new RegExp(`layer 1/1 .*: corrupt gzip stream: .*(?:${reason.source})`)).catch((e: Error) => {
      throw new Error(`${what}: ${e.message}`);
    });
  }
});

test('gzip and zstd concatenated members are one stream (as gzip(1) and zstd(1) read them)', async () => {
  const raw = payload();
  const half = Math.floor(raw.length / 2);
  for (const [c, z] of [['gzip', gzipSync], ['zstd', zstdCompress]] as const) {
    const { dir: d } = layoutWith([{ tar: raw, compression: c, mangle: () => Buffer.concat([z(raw.subarray(0, half)), z(raw.subarray(half))]) }]);
    assert.ok((await streamAll(d))[0]?.equals(raw), c);
  }
});

test('every accepted layer media type streams: OCI, non-distributable, Docker (incl. foreign), with Docker manifest and config types', async () => {
  const raw = payload();
  const types: [string, LayerInput['compression']][] = [
    ['application/vnd.oci.image.layer.v1.tar', 'none'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'none'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', 'zstd'],
    ['application/vnd.docker.image.rootfs.diff.tar', 'none'],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip'],
    ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'gzip'],
    ['application/vnd.docker.image.rootfs.diff.tar.zstd', 'zstd'],
  ];
  const b = new ImageBuilder();
  const m = b.image({ layers: types.map(([mediaType, compression]) => ({ tar: raw, compression, mediaType })), manifestMediaType: 'application/vnd.docker.distribution.manifest.v2+json' });
  // a Docker manifest with a Docker config media type
  const cfgBytes = b.blobs.get(m.config.digest.slice(7)) as Buffer;
  const cfg = b.blob(cfgBytes, 'application/vnd.docker.container.image.v1+json');
  const dm = b.json({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config: cfg, layers: m.layers }, 'application/vnd.docker.distribution.manifest.v2+json');
  const d = writeFiles(scratch(), b.layoutFiles([dm]));
  const outs = await streamAll(d);
  assert.is(outs.length, types.length);
  for (const out of outs) assert.ok(out.equals(raw));
});

void baseLayerEntries;
void sha256;
test.run();
