/**
 * A gzip member of `mib` MiB of zeros made from one compressed MiB repeated (deflate blocks ending
 * on a byte boundary may follow each other): about 1 KB a MiB, built fast and without the zeros
 * ever being in memory more than one MiB at a time.
 */
import { constants, crc32, createDeflateRaw, deflateRawSync } from 'node:zlib';

export async function gzipZeros(mib: number): Promise<Buffer> {
  const zeros = Buffer.alloc(1 << 20);
  const d = createDeflateRaw({ level: 9 });
  const parts: Buffer[] = [];
  d.on('data', (c: Buffer) => parts.push(c));
  d.write(zeros);
  await new Promise<void>((resolve) => d.flush(constants.Z_FULL_FLUSH, () => resolve()));
  d.destroy();
  const mibBlocks = Buffer.concat(parts);
  let crc = 0;
  for (let i = 0; i < mib; i++) crc = crc32(zeros, crc);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc, 0);
  trailer.writeUInt32LE((mib * 2 ** 20) % 2 ** 32, 4);
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  return Buffer.concat([header, ...new Array<Buffer>(mib).fill(mibBlocks), deflateRawSync(Buffer.alloc(0)), trailer]);
}
