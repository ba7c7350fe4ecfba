/**
 * zstd frames made by hand from raw blocks and RLE blocks of zeros: gigabytes of output from a
 * few KB of blob, built instantly and without the gigabytes ever being in memory.
 */
import { createHash } from 'node:crypto';

const MAX_BLOCK = 128 * 1024;

/** A part is literal bytes (raw blocks) or a count of zero bytes (RLE blocks). */
export type FramePart = Buffer | number;

function blockHeader(last: boolean, type: 0 | 1, size: number): Buffer {
  const v = (last ? 1 : 0) | (type << 1) | (size << 3);
  return Buffer.from([v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff]);
}

export function zstdFrame(parts: FramePart[]): Buffer {
  // magic; descriptor 0 (no content size, no checksum); window 2^(10+7) = 128 KiB
  const blocks: [0 | 1, number, Buffer][] = [];
  for (const p of parts) {
    if (typeof p === 'number') {
      for (let left = p; left > 0; left -= MAX_BLOCK) blocks.push([1, Math.min(left, MAX_BLOCK), Buffer.from([0])]);
    } else {
      for (let off = 0; off < p.length; off += MAX_BLOCK) {
        const piece = p.subarray(off, off + MAX_BLOCK);
        blocks.push([0, piece.length, piece]);
      }
    }
  }
  const out: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38])];
  blocks.forEach(([type, size, payload], i) => out.push(blockHeader(i === blocks.length - 1, type, size), payload));
  return Buffer.concat(out);
}

/** sha256 of what the frame inflates to, as a diffID. */
export function frameDiffId(parts: FramePart[]): string {
  const h = createHash('sha256');
  const zeros = Buffer.alloc(1 << 20);
  for (const p of parts) {
    if (typeof p !== 'number') h.update(p);
    else for (let left = p; left > 0; left -= zeros.length) h.update(zeros.subarray(0, Math.min(left, zeros.length)));
  }
  return `sha256:${h.digest('hex')}`;
}
