/**
 * A small tar writer for tests that can craft any header by hand: hostile names, PAX records,
 * GNU long names and long link names, hardlinks, fifos, devices, sparse files (old GNU 'S' and
 * PAX 1.0), bad checksums, truncated streams and trailing garbage. Nothing here validates input:
 * it writes exactly what it is told.
 */
import { Readable } from 'node:stream';

const BLOCK = 512;

export interface RawHeader {
  name: string;
  /** Type flag character: '0' file, '1' hardlink, '2' symlink, '3' char dev, '4' block dev, '5' dir, '6' fifo, 'x', 'g', 'L', 'K', 'S', ... */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: number;
  linkname?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  prefix?: string;
  /** 'ustar\0' + '00' by default; 'gnu' writes the old GNU magic 'ustar  \0'. */
  magic?: 'ustar' | 'gnu';
  /** A wrong checksum on purpose. */
  badChecksum?: boolean;
  /** Last word on the raw 512 bytes (after the checksum was computed, unless you recompute). */
  mutate?: (block: Buffer) => void;
}

function putString(b: Buffer, off: number, len: number, s: string): void {
  const bytes = Buffer.from(s, 'utf8');
  bytes.copy(b, off, 0, Math.min(len, bytes.length));
}

/** Octal, NUL-terminated; numbers that do not fit are written in GNU base-256. */
function putNumber(b: Buffer, off: number, len: number, n: number): void {
  const octal = n.toString(8);
  if (n >= 0 && octal.length <= len - 1) {
    putString(b, off, len, octal.padStart(len - 1, '0'));
    return;
  }
  b[off] = n < 0 ? 0xff : 0x80; // two's complement: a negative number starts with all ones
  let v = BigInt(n);
  for (let i = off + len - 1; i > off; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

export function header(h: RawHeader): Buffer {
  const b = Buffer.alloc(BLOCK);
  putString(b, 0, 100, h.name);
  putNumber(b, 100, 8, h.mode ?? 0o644);
  putNumber(b, 108, 8, h.uid ?? 0);
  putNumber(b, 116, 8, h.gid ?? 0);
  putNumber(b, 124, 12, h.size ?? 0);
  putNumber(b, 136, 12, h.mtime ?? 1_600_000_000);
  b.fill(0x20, 148, 156);
  putString(b, 156, 1, h.type ?? '0');
  putString(b, 157, 100, h.linkname ?? '');
  if (h.magic === 'gnu') putString(b, 257, 8, 'ustar  ');
  else {
    putString(b, 257, 6, 'ustar');
    putString(b, 263, 2, '00');
  }
  putString(b, 265, 32, h.uname ?? '');
  putString(b, 297, 32, h.gname ?? '');
  putNumber(b, 329, 8, h.devmajor ?? 0);
  putNumber(b, 337, 8, h.devminor ?? 0);
  if (h.magic !== 'gnu') putString(b, 345, 155, h.prefix ?? '');
  writeChecksum(b);
  if (h.badChecksum) b[148] = b[148] === 0x31 ? 0x32 : 0x31;
  h.mutate?.(b);
  return b;
}

export function writeChecksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i] as number;
  putString(b, 148, 7, sum.toString(8).padStart(6, '0') + '\0');
}

export function pad(data: Buffer): Buffer {
  const rest = data.length % BLOCK;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - rest)]);
}

/** PAX records `len key=value\n`, the length counting itself. */
export function paxRecords(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  return Buffer.concat(parts);
}

export interface Entry extends Omit<RawHeader, 'size'> {
  data?: Buffer | string;
  /** Size written in the header; defaults to the data length (set it to lie). */
  size?: number;
  /** PAX extended header ('x') before this entry. */
  pax?: Record<string, string | Buffer>;
  /** GNU long name ('L') / long link name ('K') blocks before this entry. */
  longName?: string;
  longLink?: string;
}

/** The blocks of one entry (meta headers, header, padded data). */
export function entryBlocks(e: Entry): Buffer {
  const out: Buffer[] = [];
  if (e.pax) {
    const body = paxRecords(e.pax);
    out.push(header({ name: 'PaxHeaders/x', type: 'x', size: body.length }), pad(body));
  }
  for (const [type, value] of [['L', e.longName], ['K', e.longLink]] as const) {
    if (value === undefined) continue;
    const body = Buffer.from(value + '\0');
    out.push(header({ name: '././@LongLink', type, size: body.length, magic: 'gnu' }), pad(body));
  }
  const data = typeof e.data === 'string' ? Buffer.from(e.data) : e.data ?? Buffer.alloc(0);
  out.push(header({ ...e, size: e.size ?? data.length }), pad(data));
  return Buffer.concat(out);
}

export interface TarOptions {
  /** Zero blocks at the end (default 2). */
  endBlocks?: number;
  /** Bytes appended after everything. */
  trailing?: Buffer;
}

export function tar(entries: (Entry | Buffer)[], opts: TarOptions = {}): Buffer {
  const parts = entries.map((e) => (Buffer.isBuffer(e) ? e : entryBlocks(e)));
  parts.push(Buffer.alloc(BLOCK * (opts.endBlocks ?? 2)));
  if (opts.trailing) parts.push(opts.trailing);
  return Buffer.concat(parts);
}

/** The tar as a stream, cut into chunks of `chunk` bytes (to exercise the parser's buffering). */
export function tarStream(buf: Buffer, chunk = 7001): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) pieces.push(buf.subarray(i, i + chunk));
  return Readable.from(pieces);
}

// Shorthands for ordinary entries.
export const file = (name: string, data: string | Buffer = '', more: Partial<Entry> = {}): Entry => ({ name, type: '0', data, ...more });
export const dir = (name: string, more: Partial<Entry> = {}): Entry => ({ name, type: '5', mode: 0o755, ...more });
export const symlink = (name: string, target: string, more: Partial<Entry> = {}): Entry => ({ name, type: '2', linkname: target, mode: 0o777, ...more });
export const hardlink = (name: string, target: string, more: Partial<Entry> = {}): Entry => ({ name, type: '1', linkname: target, ...more });
export const fifo = (name: string, more: Partial<Entry> = {}): Entry => ({ name, type: '6', ...more });
export const chardev = (name: string, major: number, minor: number, more: Partial<Entry> = {}): Entry => ({ name, type: '3', devmajor: major, devminor: minor, mode: 0o666, ...more });
export const whiteout = (dirName: string, victim: string): Entry => file(`${dirName ? dirName.replace(/\/$/, '') + '/' : ''}.wh.${victim}`);
export const opaque = (dirName: string): Entry => file(`${dirName ? dirName.replace(/\/$/, '') + '/' : ''}.wh..wh..opq`);

/** An old GNU sparse ('S') entry; segments are [offset, data] in file order. */
export function gnuSparse(name: string, realSize: number, segments: [number, Buffer][], more: Partial<RawHeader> = {}): Buffer {
  const data = Buffer.concat(segments.map(([, d]) => d));
  const ext: Buffer[] = [];
  const h = header({ name, type: 'S', size: data.length, magic: 'gnu', ...more, mutate: undefined });
  const inHeader = segments.slice(0, 4);
  inHeader.forEach(([off, d], i) => {
    putNumber(h, 386 + i * 24, 12, off);
    putNumber(h, 386 + i * 24 + 12, 12, d.length);
  });
  putNumber(h, 483, 12, realSize);
  let rest = segments.slice(4);
  if (rest.length > 0) h[482] = 1;
  while (rest.length > 0) {
    const block = Buffer.alloc(BLOCK);
    rest.slice(0, 21).forEach(([off, d], i) => {
      putNumber(block, i * 24, 12, off);
      putNumber(block, i * 24 + 12, 12, d.length);
    });
    rest = rest.slice(21);
    if (rest.length > 0) block[504] = 1;
    ext.push(block);
  }
  writeChecksum(h);
  more.mutate?.(h);
  return Buffer.concat([h, ...ext, pad(data)]);
}

/** A PAX 1.0 sparse entry (what `tar --sparse --format=posix` writes). */
export function paxSparse(name: string, realSize: number, segments: [number, Buffer][], more: Partial<Entry> = {}): Buffer {
  const map = pad(Buffer.from([segments.length, ...segments.flatMap(([off, d]) => [off, d.length])].join('\n') + '\n'));
  const data = Buffer.concat([map, ...segments.map(([, d]) => d)]);
  return entryBlocks({
    name: `GNUSparseFile.0/${name.split('/').pop() ?? name}`,
    type: '0',
    data,
    pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': name, 'GNU.sparse.realsize': String(realSize) },
    ...more,
  });
}
