/**
 * Resource bombs through the whole unpack, under the default settings: a tiny blob that inflates
 * to gigabytes is refused by the ratio guard long before it fills the disk, and the zstd and gzip
 * stages keep memory bounded whatever the ratio (measured in a child process: a coarse bound that
 * a decompressor ignoring backpressure breaks by far). Trailing bytes after a compressed stream are
 * a warning, not an error.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../../src/errors.js';
import { unpackImage } from '../../src/image/unpack.js';
import { BLOCK } from '../../src/layer/tar-reader.js';
import { captureLog } from '../helpers/log.js';
import { file, header, tar } from '../helpers/tar.js';
import { baseLayerEntries, ImageBuilder, scratchDirs, writeFiles, type LayerInput } from './fixtures.js';
import { frameDiffId, zstdFrame, type FramePart } from './zstd-frames.js';

const scratch = scratchDirs();
const MiB = 1024 * 1024;

/** A tar of one file of `size` zero bytes, as frame parts (the zeros never in memory). */
function zeroFileTar(size: number): FramePart[] {
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  return [header({ name: 'zeros', size }), size + pad + 2 * BLOCK];
}

function layoutWith(top: LayerInput): string {
  const b = new ImageBuilder();
  const m = b.image({ layers: [{ entries: baseLayerEntries() }, top] });
  return writeFiles(scratch(), b.layoutFiles([{ mediaType: m.mediaType, digest: m.digest, size: m.size }]));
}

function zstdLayer(parts: FramePart[], extra: Buffer = Buffer.alloc(0)): LayerInput {
  const frame = Buffer.concat([zstdFrame(parts), extra]);
  return { tar: Buffer.alloc(0), compression: 'zstd', mangle: () => frame, diffId: frameDiffId(parts) };
}

test('a 32 KB zstd blob of 1 GiB of zeros is refused as a bomb under the default settings; nothing is left', async () => {
  const parts = zeroFileTar(1024 * MiB);
  const blob = zstdFrame(parts);
  assert.ok(blob.length < 40_000, `blob of ${blob.length} bytes`);
  const parent = scratch();
  const target = join(parent, 'bundle');
  try {
    await unpackImage(layoutWith(zstdLayer(parts)), target);
    assert.unreachable('the bomb was unpacked');
  } catch (e) {
    assert.instance(e, InputError, String(e));
    assert.match((e as InputError).message, /layer 2\/2 .*inflates to more than 1000 times its compressed size .*decompression bomb \(unpackLimits.maxRatio\)/);
  }
  assert.equal(readdirSync(parent), [], 'no staging directory is left behind');
});

test('the ratio guard is a setting: with maxRatio 0 the same kind of layer (80 MiB of zeros) unpacks', async () => {
  const parts = zeroFileTar(80 * MiB);
  const target = join(scratch(), 'bundle');
  const r = await unpackImage(layoutWith(zstdLayer(parts)), target, { limits: { maxRatio: 0 } });
  assert.is(r.layers[1]?.uncompressedBytes, 80 * MiB + 3 * BLOCK);
});

test('a gzip or zstd blob with trailing bytes after its stream unpacks, with a warning and a layer.trailing event that count them', async () => {
  const entries = [file('x', 'y')];
  const after = Buffer.from('garbage after the stream');
  const layers: [string, LayerInput][] = [
    ['zstd', zstdLayer([tar(entries)], after)],
    ['gzip', { entries, compression: 'gzip', mangle: (b) => Buffer.concat([b, after]) }],
  ];
  for (const [c, layer] of layers) {
    const { log, events } = captureLog();
    const path = layoutWith(layer);
    const r = await unpackImage(path, join(scratch(), 'bundle'), { log });
    assert.ok(r.warnings.some((w) => new RegExp(`layer 2/2 .*: 24 bytes after the end of the ${c} stream ignored`).test(w)), r.warnings.join('\n'));
    const trailing = events.filter((e) => e.event === 'layer.trailing');
    assert.is(trailing.length, 1, c);
    assert.is(trailing[0]!.level, 'warn');
    assert.is(trailing[0]!.entry, path);
    assert.is(trailing[0]!.digest, r.layers[1]!.digest);
    assert.is(trailing[0]!.bytes, after.length);
    assert.is(trailing[0]!.compression, c);
    assert.is(trailing[0]!.layer, 2);
  }
});

for (const codec of ['zstd', 'gzip'] as const)
  test(`${codec} keeps memory bounded: 2 GiB of zeros from a small blob, read 16 MiB at most, peak RSS stays under 300 MiB`, () => {
    const child = join(dirname(fileURLToPath(import.meta.url)), 'decompress-memory-child.js');
    const r = spawnSync(process.execPath, [child, codec, '2048'], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
    const peak = Number(r.stdout.trim());
    assert.ok(peak > 0 && peak < 300, `peak RSS ${peak} MiB`);
  });

test.run();
