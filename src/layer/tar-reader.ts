/**
 * A push tar reader: `write()` is fed the raw (uncompressed) stream in chunks of any size and calls
 * the sink synchronously for every entry and every piece of its data. Synchronous on purpose: the
 * applier runs in a worker with sync fs calls, and a callback-per-entry stream parser costs more
 * than the extraction itself there (figures in the report / BENCHMARKS.md).
 *
 * Formats: ustar, old GNU, v7; PAX extended headers ('x'; global 'g' records are read and ignored,
 * as Go's archive/tar users containerd and umoci do); GNU long names ('L') and long link names
 * ('K'); sparse files in the old GNU form ('S' with extension blocks) and PAX 0.1 and 1.0.
 * Everything is bounded by the limits before memory or disk is spent on it. The stream ends with
 * an end-of-archive block followed by nothing but zero padding, or cleanly after an entry.
 */
import { InputError } from '../errors.js';
import { display } from '../fsroot/binary.js';

export const BLOCK = 512;

/** Hard caps that are not worth a setting: a PAX header and a sparse map in memory. */
export const MAX_META_BYTES = 1 << 20;
export const MAX_SPARSE_SEGMENTS = 1 << 16;
/**
 * Bytes accepted after the end-of-archive block: writers pad to their record size (GNU tar 10 KiB,
 * `-b 2048` 1 MiB); beyond that the "padding" is only a way to make us inflate and hash gigabytes.
 */
export const MAX_TRAILING_BYTES = 4 << 20;

export interface TarLimits {
  /** Uncompressed bytes of the whole tar stream. */
  maxBytes: number;
  /** Entries (PAX and GNU meta headers not counted). */
  maxEntries: number;
  /** Bytes in an entry's name or link name. */
  maxNameLength: number;
  /** Apparent size of one sparse file (its holes cost no disk, but its size is still a bomb). */
  maxSparseRealSize: number;
}

export interface SparseSegment {
  offset: number;
  length: number;
}

export interface TarEntry {
  /** Name and link name are binary strings: one char per byte of the archive (fsroot/binary.ts). */
  name: string;
  linkname: string;
  /** The type flag character ('0' regular, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, ...). */
  type: string;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of data that follow in the stream (for a sparse file: the stored segments). */
  size: number;
  /** Seconds since the epoch (fractional with PAX). */
  mtime: number;
  atime: number | undefined;
  devmajor: number;
  devminor: number;
  /** From PAX `SCHILY.xattr.*` (and `LIBARCHIVE.xattr.*`), in the order given. Read-only. */
  xattrs: ReadonlyMap<string, Buffer>;
  sparse: { realSize: number; segments: SparseSegment[] } | undefined;
}

export interface TarSink {
  entry(e: TarEntry): void;
  /** A piece of the current entry's data and where it goes in the file. */
  data(chunk: Buffer, position: number): void;
  entryEnd(): void;
}

/** Types whose size field says nothing about data in the stream (as Go's archive/tar reads them). */
const HEADER_ONLY_TYPES = new Set(['1', '2', '3', '4', '5', '6']);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Shared by every entry without xattrs (most of them): one Map less per entry. */
const NO_XATTRS: ReadonlyMap<string, Buffer> = new Map();

type State =
  | { kind: 'header' }
  | { kind: 'meta'; type: string; size: number; body: Buffer[]; got: number }
  | { kind: 'sparseExt'; entry: TarEntry }
  | { kind: 'sparseMap'; entry: TarEntry; got: Buffer[]; size: number; newlines: number }
  | { kind: 'data'; remaining: number; segment: number; segmentLeft: number; position: number; entry: TarEntry }
  | { kind: 'skip'; remaining: number }
  | { kind: 'end'; trailing: number; data: boolean };

interface Pending {
  pax: Map<string, Buffer>;
  longName: string | undefined;
  longLink: string | undefined;
  /** Bytes of meta headers since the last entry: a chain of them must not grow without bound. */
  metaBytes: number;
}

export class TarReader {
  /** Bytes consumed so far. */
  bytesRead = 0;
  entries = 0;
  private state: State = { kind: 'header' };
  private block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  private pending: Pending = { pax: new Map(), longName: undefined, longLink: undefined, metaBytes: 0 };
  /** The name of the entry being read, for error messages. */
  current: string | undefined;

  constructor(
    private readonly sink: TarSink,
    private readonly limits: TarLimits,
    private readonly onWarning: (msg: string) => void = () => {},
  ) {}

  private fail(reason: string): never {
    throw new InputError(reason, { field: this.current });
  }

  write(chunk: Buffer): void {
    this.bytesRead += chunk.length;
    if (this.bytesRead > this.limits.maxBytes) {
      this.fail(`layer is larger than the limit of ${this.limits.maxBytes} bytes uncompressed`);
    }
    let off = 0;
    while (off < chunk.length) off = this.step(chunk, off);
  }

  /**
   * The stream ended. Accepted after an end-of-archive block, and cleanly between entries: the
   * last entry's data complete, its padding and the end-of-archive blocks missing, as Debian's
   * umoci 0.4.7 `umoci insert` writes layers and as Go's archive/tar and GNU tar read them (a cut
   * blob is caught by its digest, size and diffID checks, not here). Refused: a stream that ends
   * inside a header, an entry's data, or between extended headers and their entry.
   */
  end(): void {
    const st = this.state;
    if (st.kind === 'end') {
      // as umoci does: the diffID covers these bytes, and tar readers stop at the end block
      if (st.data) this.onWarning(`${st.trailing} bytes after the end-of-archive block ignored (not all zero)`);
      return;
    }
    const betweenEntries = (st.kind === 'header' && this.blockFill === 0) || st.kind === 'skip';
    if (!betweenEntries) this.fail('truncated: the stream ends inside an entry');
    if (this.pending.metaBytes > 0 || this.pending.pax.size > 0 || this.pending.longName !== undefined || this.pending.longLink !== undefined) {
      this.fail('truncated: the stream ends after an extended header, before its entry');
    }
  }

  /** Fills `this.block`; true once it holds 512 bytes. */
  private fillBlock(chunk: Buffer, off: number): number {
    const n = Math.min(BLOCK - this.blockFill, chunk.length - off);
    chunk.copy(this.block, this.blockFill, off, off + n);
    this.blockFill += n;
    return off + n;
  }

  private step(chunk: Buffer, off: number): number {
    const st = this.state;
    switch (st.kind) {
      case 'header': {
        // Fast path: a whole header in the chunk needs no copy.
        let blk: Buffer;
        if (this.blockFill === 0 && chunk.length - off >= BLOCK) {
          blk = chunk.subarray(off, off + BLOCK);
          off += BLOCK;
        } else {
          off = this.fillBlock(chunk, off);
          if (this.blockFill < BLOCK) return off;
          blk = this.block;
        }
        this.blockFill = 0;
        this.header(blk);
        return off;
      }
      case 'meta': {
        const n = Math.min(st.size - st.got, chunk.length - off);
        st.body.push(Buffer.from(chunk.subarray(off, off + n)));
        st.got += n;
        off += n;
        if (st.got === st.size) {
          this.meta(st.type, Buffer.concat(st.body));
          this.state = { kind: 'skip', remaining: padding(st.size) };
        }
        return off;
      }
      case 'sparseExt': {
        off = this.fillBlock(chunk, off);
        if (this.blockFill < BLOCK) return off;
        this.blockFill = 0;
        const segs = st.entry.sparse!.segments;
        for (let i = 0; i < 21; i++) this.addOldSparse(segs, this.block, i * 24);
        if (this.block[504] === 0) this.startData(st.entry);
        return off;
      }
      case 'sparseMap': {
        off = this.fillBlock(chunk, off);
        if (this.blockFill < BLOCK) return off;
        this.blockFill = 0;
        st.got.push(Buffer.from(this.block));
        st.size -= BLOCK;
        if (st.size < 0) this.fail('sparse map runs past the entry data');
        if (st.got.length * BLOCK > MAX_META_BYTES) this.fail('sparse map is too large');
        for (let i = 0; i < BLOCK; i++) if (this.block[i] === 0x0a) st.newlines++;
        // Parse only once enough lines are in (count + 2 per segment): linear, not quadratic.
        if (st.newlines === 0) return off;
        const first = st.got[0] as Buffer;
        const countText = first.toString('latin1', 0, Math.max(0, first.indexOf(0x0a)));
        if (!/^[0-9]{1,7}$/.test(countText) || Number(countText) > MAX_SPARSE_SEGMENTS) this.fail('malformed sparse map');
        if (st.newlines < 1 + 2 * Number(countText)) return off;
        const parsed = parseSparseMap(Buffer.concat(st.got));
        if (parsed === undefined) this.fail('malformed sparse map');
        st.entry.sparse!.segments = parsed;
        st.entry.size = st.size;
        this.startData(st.entry);
        return off;
      }
      case 'data': {
        if (st.remaining === 0) {
          this.finishData(st.entry.size);
          return off;
        }
        let n = Math.min(st.remaining, chunk.length - off);
        const sparse = st.entry.sparse;
        if (sparse !== undefined) {
          while (st.segmentLeft === 0) {
            const seg = sparse.segments[++st.segment] as SparseSegment;
            st.position = seg.offset;
            st.segmentLeft = seg.length;
          }
          n = Math.min(n, st.segmentLeft);
          st.segmentLeft -= n;
        }
        this.sink.data(chunk.subarray(off, off + n), st.position);
        st.position += n;
        st.remaining -= n;
        off += n;
        if (st.remaining === 0) this.finishData(st.entry.size);
        return off;
      }
      case 'skip': {
        const n = Math.min(st.remaining, chunk.length - off);
        st.remaining -= n;
        off += n;
        if (st.remaining === 0) this.state = { kind: 'header' };
        return off;
      }
      case 'end': {
        st.trailing += chunk.length - off;
        if (st.trailing > MAX_TRAILING_BYTES) {
          this.current = undefined;
          this.fail(`more than ${MAX_TRAILING_BYTES} bytes after the end-of-archive block`);
        }
        if (!st.data) for (let i = off; i < chunk.length && !st.data; i++) st.data = chunk[i] !== 0;
        return chunk.length;
      }
    }
  }

  private finishData(size: number): void {
    this.sink.entryEnd();
    this.state = { kind: 'skip', remaining: padding(size) };
    if (padding(size) === 0) this.state = { kind: 'header' };
  }

  private header(blk: Buffer): void {
    if (isZero(blk)) {
      if (this.pending.pax.size > 0 || this.pending.longName !== undefined || this.pending.longLink !== undefined) {
        this.fail('end of archive right after an extended header');
      }
      this.state = { kind: 'end', trailing: 0, data: false };
      return;
    }
    if (!checksumOk(blk)) this.fail(`invalid tar header at offset ${this.bytesRead}: bad checksum`);
    const type = blk[156] === 0 ? '0' : String.fromCharCode(blk[156] as number);
    const size = this.number(blk, 124, 12, 'size');
    if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
      const cap = type === 'L' || type === 'K' ? this.limits.maxNameLength + 1 : MAX_META_BYTES;
      if (size > cap) this.fail(`${type === 'L' || type === 'K' ? 'GNU long name' : 'PAX header'} of ${size} bytes is over the limit of ${cap}`);
      this.pending.metaBytes += size;
      if (this.pending.metaBytes > MAX_META_BYTES) this.fail(`extended headers before one entry exceed ${MAX_META_BYTES} bytes`);
      this.state = size === 0 ? { kind: 'header' } : { kind: 'meta', type, size, body: [], got: 0 };
      if (size === 0) this.meta(type, Buffer.alloc(0));
      return;
    }
    const magic = blk.toString('latin1', 257, 263);
    const posix = magic === 'ustar\0';
    let name = this.string(blk, 0, 100);
    if (posix) {
      const prefix = this.string(blk, 345, 155);
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    const pax = this.pending.pax;
    // errors in the fields below are this entry's, not the previous one's
    this.current = display(this.pending.longName ?? name);
    const entry: TarEntry = {
      name: this.pending.longName ?? name,
      linkname: this.pending.longLink ?? this.string(blk, 157, 100),
      type: type === '7' ? '0' : type,
      mode: this.number(blk, 100, 8, 'mode'),
      uid: this.number(blk, 108, 8, 'uid'),
      gid: this.number(blk, 116, 8, 'gid'),
      size: HEADER_ONLY_TYPES.has(type) ? 0 : size,
      mtime: this.number(blk, 136, 12, 'mtime', true),
      atime: undefined,
      devmajor: type === '3' || type === '4' ? this.number(blk, 329, 8, 'devmajor') : 0,
      devminor: type === '3' || type === '4' ? this.number(blk, 337, 8, 'devminor') : 0,
      xattrs: NO_XATTRS,
      sparse: undefined,
    };
    // Old (v7) archives mark directories by a trailing slash on a type-NUL entry, as Go reads them.
    if (blk[156] === 0 && entry.name.endsWith('/')) entry.type = '5';
    this.pending = { pax: new Map(), longName: undefined, longLink: undefined, metaBytes: 0 };
    if (pax.size > 0) this.applyPax(entry, pax);
    this.current = display(entry.name);
    if (entry.name.length > this.limits.maxNameLength) this.fail(`name is longer than the limit of ${this.limits.maxNameLength} bytes`);
    if (entry.linkname.length > this.limits.maxNameLength) this.fail(`link name is longer than the limit of ${this.limits.maxNameLength} bytes`);
    if (entry.name.includes('\0') || entry.linkname.includes('\0')) this.fail('name contains a NUL byte');
    if (++this.entries > this.limits.maxEntries) this.fail(`more entries than the limit of ${this.limits.maxEntries}`);
    if (this.bytesRead + entry.size > this.limits.maxBytes) {
      this.fail(`entry of ${entry.size} bytes would take the layer over the limit of ${this.limits.maxBytes} bytes uncompressed`);
    }
    if (type === 'S') {
      entry.type = '0';
      entry.sparse = { realSize: this.number(blk, 483, 12, 'sparse real size'), segments: [] };
      for (let i = 0; i < 4; i++) this.addOldSparse(entry.sparse.segments, blk, 386 + i * 24);
      if (blk[482] !== 0) {
        this.state = { kind: 'sparseExt', entry };
        return;
      }
    }
    if (entry.sparse !== undefined && entry.sparse.segments.length === 0 && pax.get('GNU.sparse.major')?.toString() === '1') {
      this.checkRealSize(entry.sparse.realSize);
      this.state = { kind: 'sparseMap', entry, got: [], size: entry.size, newlines: 0 };
      return;
    }
    this.startData(entry);
  }

  private startData(entry: TarEntry): void {
    if (entry.sparse !== undefined) this.checkSparse(entry);
    this.sink.entry(entry);
    const segments = entry.sparse?.segments;
    if (entry.size === 0) {
      this.sink.entryEnd();
      this.state = { kind: 'header' };
      return;
    }
    this.state = {
      kind: 'data',
      remaining: entry.size,
      segment: segments ? -1 : 0,
      segmentLeft: segments ? 0 : entry.size,
      position: 0,
      entry,
    };
  }

  private checkRealSize(realSize: number): void {
    if (realSize > this.limits.maxSparseRealSize) {
      this.fail(`sparse file of ${realSize} bytes is over the limit of ${this.limits.maxSparseRealSize}`);
    }
  }

  /** Segments must be in order, not overlap, stay inside the real size, and add up to the data. */
  private checkSparse(entry: TarEntry): void {
    const { realSize, segments } = entry.sparse!;
    this.checkRealSize(realSize);
    let end = 0;
    let total = 0;
    for (const s of segments) {
      if (s.offset < end || s.offset + s.length > realSize) this.fail('sparse map is out of order or outside the file');
      end = s.offset + s.length;
      total += s.length;
    }
    if (total !== entry.size) this.fail(`sparse map covers ${total} bytes but the entry holds ${entry.size}`);
  }

  private addOldSparse(segments: SparseSegment[], blk: Buffer, off: number): void {
    if (blk[off] === 0) return;
    if (segments.length >= MAX_SPARSE_SEGMENTS) this.fail('sparse map is too large');
    const offset = this.number(blk, off, 12, 'sparse offset');
    const length = this.number(blk, off + 12, 12, 'sparse length');
    segments.push({ offset, length });
  }

  private meta(type: string, body: Buffer): void {
    if (type === 'L' || type === 'K') {
      const nul = body.indexOf(0);
      const value = (nul === -1 ? body : body.subarray(0, nul)).toString('latin1');
      if (type === 'L') this.pending.longName = value;
      else this.pending.longLink = value;
      return;
    }
    const records = this.parsePax(body);
    if (type === 'g') return; // global records: ignored, as Go's archive/tar users do
    for (const [k, v] of records) this.pending.pax.set(k, v);
  }

  private parsePax(body: Buffer): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    let off = 0;
    while (off < body.length) {
      if (body[off] === 0) break; // NUL padding after the records
      const space = body.indexOf(0x20, off);
      const lenText = space === -1 ? '' : body.toString('latin1', off, space);
      if (!/^[1-9][0-9]{0,7}$/.test(lenText)) this.fail('malformed PAX record length');
      const len = Number(lenText);
      const end = off + len;
      if (end > body.length || body[end - 1] !== 0x0a) this.fail('malformed PAX record');
      const eq = body.indexOf(0x3d, space + 1);
      if (eq === -1 || eq >= end) this.fail('malformed PAX record (no "=")');
      out.set(this.decode(body.subarray(space + 1, eq)), Buffer.from(body.subarray(eq + 1, end - 1)));
      off = end;
    }
    return out;
  }

  private applyPax(e: TarEntry, pax: Map<string, Buffer>): void {
    const sparseMajor = pax.get('GNU.sparse.major')?.toString();
    const sparseMinor = pax.get('GNU.sparse.minor')?.toString();
    let xattrs: Map<string, Buffer> | undefined;
    for (const [key, raw] of pax) {
      const value = () => this.decode(raw);
      switch (key) {
        // names as bytes, whatever the PAX charset (binary strings, as the ustar fields)
        case 'path': e.name = raw.toString('latin1'); break;
        case 'linkpath': e.linkname = raw.toString('latin1'); break;
        case 'size': if (!HEADER_ONLY_TYPES.has(e.type)) e.size = this.paxInt(value(), key); break;
        case 'uid': e.uid = this.paxInt(value(), key); break;
        case 'gid': e.gid = this.paxInt(value(), key); break;
        case 'mtime': e.mtime = this.paxTime(value(), key); break;
        case 'atime': e.atime = this.paxTime(value(), key); break;
        default:
          if (key.startsWith('SCHILY.xattr.')) (xattrs ??= new Map()).set(key.slice('SCHILY.xattr.'.length), raw);
          else if (key.startsWith('LIBARCHIVE.xattr.')) {
            (xattrs ??= new Map()).set(this.uriDecode(key.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(raw.toString('latin1'), 'base64'));
          }
      }
    }
    if (xattrs !== undefined) e.xattrs = xattrs;
    // PAX sparse formats: 0.1 keeps the map in a record, 1.0 at the start of the data.
    if (pax.has('GNU.sparse.name')) e.name = pax.get('GNU.sparse.name')!.toString('latin1');
    const realSize = pax.get('GNU.sparse.realsize') ?? pax.get('GNU.sparse.size');
    if (sparseMajor === '1' && sparseMinor === '0') {
      e.sparse = { realSize: this.paxInt(realSize?.toString() ?? '', 'GNU.sparse.realsize'), segments: [] };
    } else if (pax.has('GNU.sparse.map')) {
      const nums = pax.get('GNU.sparse.map')!.toString().split(',');
      if (nums.length % 2 !== 0 || nums.length / 2 > MAX_SPARSE_SEGMENTS) this.fail('malformed GNU.sparse.map');
      const segments: SparseSegment[] = [];
      for (let i = 0; i < nums.length; i += 2) {
        segments.push({ offset: this.paxInt(nums[i] ?? '', 'GNU.sparse.map'), length: this.paxInt(nums[i + 1] ?? '', 'GNU.sparse.map') });
      }
      e.sparse = { realSize: this.paxInt(realSize?.toString() ?? '', 'GNU.sparse.size'), segments };
    } else if (sparseMajor !== undefined || pax.has('GNU.sparse.offset')) {
      this.fail('unsupported sparse format (GNU PAX 0.0)');
    }
  }

  private uriDecode(text: string): string {
    try {
      return decodeURIComponent(text);
    } catch {
      return this.fail('malformed LIBARCHIVE.xattr name');
    }
  }

  private paxInt(text: string, key: string): number {
    if (!/^[0-9]{1,16}$/.test(text)) this.fail(`invalid PAX ${key} "${text.slice(0, 40)}"`);
    const n = Number(text);
    if (!Number.isSafeInteger(n)) this.fail(`PAX ${key} out of range`);
    return n;
  }

  private paxTime(text: string, key: string): number {
    if (!/^-?[0-9]{1,12}(\.[0-9]{0,9})?$/.test(text)) this.fail(`invalid PAX ${key} "${text.slice(0, 40)}"`);
    return Number(text);
  }

  /** A NUL-terminated header field, as a binary string (names are bytes: see fsroot/binary.ts). */
  private string(blk: Buffer, off: number, len: number): string {
    let end = off;
    for (const limit = off + len; end < limit && blk[end] !== 0; end++);
    return blk.toString('latin1', off, end);
  }

  private decode(bytes: Uint8Array): string {
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail('PAX record is not valid UTF-8');
    }
  }

  /**
   * Octal (NUL/space padded) or GNU base-256 (two's complement). Negative values only where
   * `negativeOk` (a pre-1970 mtime, as GNU tar and Go write it); unsafe integers are refused.
   */
  private number(blk: Buffer, off: number, len: number, what: string, negativeOk = false): number {
    const first = blk[off] as number;
    if (first & 0x80) {
      const negative = (first & 0x40) !== 0;
      if (negative && !negativeOk) this.fail(`negative ${what} in header`);
      let v = BigInt(first & 0x7f);
      for (let i = off + 1; i < off + len; i++) v = (v << 8n) | BigInt(blk[i] as number);
      if (negative) v -= 1n << BigInt(8 * len - 1); // the 0x80 marker bit is not part of the value
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} out of range in header`);
      return Number(v);
    }
    let end = off + len;
    let start = off;
    while (start < end && blk[start] === 0x20) start++;
    for (let i = start; i < end; i++) {
      if (blk[i] === 0 || blk[i] === 0x20) {
        end = i;
        break;
      }
    }
    let n = 0;
    for (let i = start; i < end; i++) {
      const c = (blk[i] as number) - 0x30;
      if (c < 0 || c > 7) this.fail(`invalid ${what} in header`);
      n = n * 8 + c;
    }
    return n;
  }
}

function padding(size: number): number {
  const rest = size % BLOCK;
  return rest === 0 ? 0 : BLOCK - rest;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** Unsigned sum (POSIX) or, as some old writers did, signed sum; the field counts as spaces. */
function checksumOk(b: Buffer): boolean {
  let unsigned = 8 * 0x20; // the checksum field itself counts as spaces
  let high = 0; // bytes > 127, for the signed variant
  for (let i = 0; i < 148; i++) {
    const v = b[i] as number;
    unsigned += v;
    if (v > 127) high++;
  }
  for (let i = 156; i < BLOCK; i++) {
    const v = b[i] as number;
    unsigned += v;
    if (v > 127) high++;
  }
  const text = b.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').replace(/^[ ]+/, '');
  if (!/^[0-7]{1,7}$/.test(text)) return false;
  const stored = parseInt(text, 8);
  return stored === unsigned || stored === unsigned - 256 * high;
}

/** The PAX 1.0 sparse map (decimal lines: count, then offset/length pairs), or undefined if incomplete. */
function parseSparseMap(buf: Buffer): SparseSegment[] | undefined {
  const text = buf.toString('latin1');
  const lines = text.split('\n');
  if (lines.length < 2) return undefined;
  const count = Number(lines[0]);
  if (!/^[0-9]{1,7}$/.test(lines[0] ?? '') || count > MAX_SPARSE_SEGMENTS) {
    throw new InputError('malformed sparse map');
  }
  if (lines.length < 2 + count * 2) return undefined; // the last line may still be incomplete
  const segments: SparseSegment[] = [];
  for (let i = 0; i < count; i++) {
    const o = lines[1 + i * 2] ?? '';
    const l = lines[2 + i * 2] ?? '';
    if (!/^[0-9]{1,16}$/.test(o) || !/^[0-9]{1,16}$/.test(l)) throw new InputError('malformed sparse map');
    segments.push({ offset: Number(o), length: Number(l) });
  }
  return segments;
}
