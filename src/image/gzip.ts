/**
 * gzip decompression as a pipeline stage, member by member. Concatenated members are one stream
 * (RFC 1952; gzip(1) and Go read them so) and are decompressed to the end; anything after the last
 * member that does not start another one is trailing data, as gzip(1) ignores it with a warning:
 * counted and reported through `onTrailing` once the input ends, never decompressed. The blob's
 * digest still covers those bytes. A member cut short or corrupted is an error.
 *
 * node's Gunzip cannot tell these apart: it takes any non-zero byte after a member for the next
 * header and fails (dropping the last output), and ignores zero bytes silently. So each member's
 * header and trailer (CRC-32, length) are read here and its deflate data inflated raw by zlib,
 * which tells where that data ends (`bytesWritten`). Output waits for its reader: zlib stops
 * inflating while the stage's output is not taken (memory stays bounded whatever the ratio).
 */
import { crc32, createInflateRaw } from 'node:zlib';
import { CorruptStreamError } from './codec-error.js';

/** Output chunks: larger ones bought no speed and cost memory (measured with node's Gunzip). */
const CHUNK = 1 << 16;
/** A header whose extra field, name and comment take more than this is not one we read. */
const MAX_HEADER = 1 << 20;

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

export function gunzip(onTrailing: (bytes: number) => void): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* (source) {
    const input = new Input(source[Symbol.asyncIterator]());
    for (let members = 0; ; members++) {
      const start = await input.peek(2);
      if (members > 0 && !(start[0] === 0x1f && start[1] === 0x8b)) {
        const trailing = await input.drain();
        if (trailing > 0) onTrailing(trailing);
        return;
      }
      yield* member(input);
    }
  };
}

/** One member: header, deflate data, trailer; what follows it stays in `input`. */
async function* member(input: Input): AsyncGenerator<Buffer> {
  input.skip(await readHeader(input));
  let crc = 0;
  let size = 0;
  for await (const out of inflate(input)) {
    crc = crc32(out, crc);
    size += out.length;
    yield out;
  }
  const trailer = await input.peek(8);
  if (trailer.length < 8) throw new CorruptStreamError('unexpected end of file (the stream ends in a member trailer)');
  if (trailer.readUInt32LE(0) !== crc) throw new CorruptStreamError('the CRC-32 of a member does not match its data');
  if (trailer.readUInt32LE(4) !== size % 2 ** 32) throw new CorruptStreamError('the length of a member does not match its data');
  input.skip(8);
}

/** The length of the member header at the start of `input` (RFC 1952 2.3), once all of it is there. */
async function readHeader(input: Input): Promise<number> {
  for (let want = 10; ; ) {
    const b = await input.peek(want);
    if (b.length < want) throw new CorruptStreamError('unexpected end of file (the stream ends in a member header)');
    if (b[0] !== 0x1f || b[1] !== 0x8b) throw new CorruptStreamError('not a gzip member header');
    if (b[2] !== 8) throw new CorruptStreamError(`unknown compression method ${b[2]} in a member header`);
    const flags = b[3] as number;
    if (flags & 0xe0) throw new CorruptStreamError('reserved flags set in a member header');
    const length = headerLength(b, flags);
    if (length === undefined) {
      if (b.length >= MAX_HEADER) throw new CorruptStreamError(`a member header longer than ${MAX_HEADER} bytes`);
      want = b.length + 1; // a name or comment not yet terminated, or an extra field not all there
      continue;
    }
    if (length > b.length) {
      want = length;
      continue;
    }
    if (flags & FHCRC && (crc32(b.subarray(0, length - 2)) & 0xffff) !== b.readUInt16LE(length - 2))
      throw new CorruptStreamError('the header CRC of a member does not match');
    return length;
  }
}

/** Where the header in `b` ends, or undefined while a name or comment has no end in `b` yet. */
function headerLength(b: Buffer, flags: number): number | undefined {
  let pos = 10;
  if (flags & FEXTRA) {
    if (b.length < pos + 2) return pos + 2;
    pos += 2 + b.readUInt16LE(pos);
  }
  for (const field of [FNAME, FCOMMENT]) {
    if (!(flags & field)) continue;
    if (b.length < pos) return pos;
    const end = b.indexOf(0, pos);
    if (end === -1) return undefined;
    pos = end + 1;
  }
  return flags & FHCRC ? pos + 2 : pos;
}

/** The raw deflate data at the start of `input`, inflated; the bytes after it are put back. */
async function* inflate(input: Input): AsyncGenerator<Buffer> {
  const inf = createInflateRaw({ chunkSize: CHUNK });
  let written = 0;
  const writer = (async () => {
    for (let chunk = await input.next(); chunk !== undefined; chunk = await input.next()) {
      written += chunk.length;
      // resolves once zlib has taken the chunk, which waits while the output is not read
      await new Promise<void>((resolve, reject) => inf.write(chunk, (e) => (e ? reject(e) : resolve())));
      const left = written - inf.bytesWritten;
      if (left > 0) {
        // the deflate data ended inside this chunk (zlib ended the output): the rest is not ours
        input.unshift(chunk.subarray(chunk.length - left));
        return;
      }
    }
    inf.end(); // zlib fails with "unexpected end of file" unless the data was complete
  })();
  writer.catch((e: Error) => inf.destroy(e)); // the source failed: so does the output
  try {
    for await (const out of inf) yield out as Buffer;
    await writer;
  } finally {
    inf.destroy();
  }
}

/** The source's bytes with a look-ahead: what one member leaves is where the next one starts. */
class Input {
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** At least `n` bytes from the current position, fewer only at the end of the input. */
  async peek(n: number): Promise<Buffer> {
    while (this.buf.length < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    }
    return this.buf;
  }

  skip(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  /** The next bytes, as much as is at hand; undefined at the end. */
  async next(): Promise<Buffer | undefined> {
    if (this.buf.length > 0) {
      const b = this.buf;
      this.buf = Buffer.alloc(0);
      return b;
    }
    if (this.ended) return undefined;
    const r = await this.it.next();
    if (r.done) this.ended = true;
    return r.done ? undefined : r.value;
  }

  unshift(b: Buffer): void {
    this.buf = this.buf.length === 0 ? b : Buffer.concat([b, this.buf]);
  }

  /** Reads to the end, only counting (the blob digest has already seen these bytes). */
  async drain(): Promise<number> {
    let n = 0;
    for (let b = await this.next(); b !== undefined; b = await this.next()) n += b.length;
    return n;
  }
}
