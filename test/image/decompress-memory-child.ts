/**
 * Child process of bombs.test.ts: inflates `argv[3]` MiB of zeros (one hand-made zstd frame or
 * gzip member of `argv[2]`, a few KB or MB) through the layer stream's decompression stage into
 * a reader that takes only the first 16 MiB, and prints the peak RSS seen, in MiB. A
 * decompressor that ignores backpressure has inflated everything before the reader gets its
 * first chunk.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressStage } from '../../src/image/layer-stream.js';
import { gzipZeros } from './gzip-frames.js';
import { zstdFrame } from './zstd-frames.js';

const codec = process.argv[2];
if (codec !== 'gzip' && codec !== 'zstd') throw new Error(`usage: decompress-memory-child.js gzip|zstd MiB`);
const mib = Number(process.argv[3]);
const blob = codec === 'zstd' ? zstdFrame([mib * 1024 * 1024]) : await gzipZeros(mib);
let peak = 0;
let seen = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    peak = Math.max(peak, process.memoryUsage.rss());
    seen += chunk.length;
    done(seen >= 16 << 20 ? new Error('enough') : null);
  },
});
const stage = decompressStage(codec, () => {});
await (pipeline as (...s: unknown[]) => Promise<void>)(Readable.from([blob]), stage, sink).catch((e: Error) => {
  if (e.message !== 'enough') throw e;
});
peak = Math.max(peak, process.memoryUsage.rss());
process.stdout.write(`${Math.round(peak / 2 ** 20)}\n`);
