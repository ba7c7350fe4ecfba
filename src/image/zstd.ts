/**
 * zstd decompression as a pipeline stage that honours backpressure. zstd-napi's own
 * DecompressStream decompresses each input chunk to the end before it looks at its reader: a
 * 134 KB blob of zeros became gigabytes of queued output (2.2 GB RSS). Here an async generator
 * yields one output buffer at a time, so nothing is decompressed before the consumer asks.
 *
 * Concatenated frames and skippable frames are zstd; anything else after a complete frame is
 * trailing data (as `zstd -d` ignores it with a warning): reported through `onTrailing` with its
 * size once the input ends, never decompressed. The blob's digest still covers those bytes.
 */
import { createRequire } from 'node:module';
import { CorruptStreamError } from './codec-error.js';

// the native binding is CommonJS with no named exports an ES module can see
const { DCtx, DParameter, dStreamOutSize } = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');

const OUT_SIZE = dStreamOutSize();

/** The zstd CLI's own default: frames that need a window over 128 MiB are refused, not allocated. */
const WINDOW_LOG_MAX = 27;

/** A frame (0xFD2FB528) or a skippable frame (0x184D2A5?) starts here (little endian). */
function isFrameStart(b: Buffer): boolean {
  return (b[0] === 0x28 && b[1] === 0xb5 && b[2] === 0x2f && b[3] === 0xfd) || (((b[0] as number) & 0xf0) === 0x50 && b[1] === 0x2a && b[2] === 0x4d && b[3] === 0x18);
}

export function zstdDecompress(onTrailing: (bytes: number) => void): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (source) {
    const dctx = new DCtx();
    dctx.setParameter(DParameter.windowLogMax, WINDOW_LOG_MAX);
    let inFrame = false;
    let trailing = 0; // bytes after the last frame
    let carry: Buffer | undefined; // fewer than 4 bytes after a frame: not enough to tell yet
    for await (const chunk of source) {
      if (trailing > 0) {
        trailing += chunk.length; // only counted: the blob digest has already seen them
        continue;
      }
      let src = carry === undefined ? chunk : Buffer.concat([carry, chunk]);
      carry = undefined;
      for (;;) {
        if (!inFrame) {
          if (src.length === 0) break;
          if (src.length < 4) {
            carry = src;
            break;
          }
          if (!isFrameStart(src)) {
            trailing = src.length;
            break;
          }
        }
        const out = Buffer.allocUnsafe(OUT_SIZE);
        const [ret, produced, consumed] = decompressStep(dctx, out, src);
        src = src.subarray(consumed);
        inFrame = ret !== 0;
        if (produced > 0) yield out.subarray(0, produced); // waits here until the reader wants more
        // all input taken and the output not full: nothing more until the next chunk
        if (src.length === 0 && produced < out.length) break;
      }
    }
    if (inFrame) throw new CorruptStreamError('the stream ends in the middle of a frame');
    trailing += carry?.length ?? 0;
    if (trailing > 0) onTrailing(trailing);
  };
}

/** One step of the decoder; what it throws is the data's fault (zstd-napi's errors carry no code). */
function decompressStep(dctx: InstanceType<typeof DCtx>, out: Buffer, src: Buffer): [number, number, number] {
  try {
    return dctx.decompressStream(out, src);
  } catch (e) {
    throw new CorruptStreamError(e instanceof Error ? e.message : String(e));
  }
}
