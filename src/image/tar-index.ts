/**
 * Indexes an (uncompressed) tar archive by member: name -> offset and size of its data, found by
 * reading only the 512-byte headers and seeking over the data. Blobs are then streamed straight
 * from their offsets, so an oci-archive or docker-save tarball is never extracted to disk.
 *
 * Understands ustar/GNU/v7 headers, PAX extended headers (path, linkpath, size), GNU long names
 * and long link names, base-256 sizes. Later members of the same name replace earlier ones (tar
 * semantics). Sparse members and anything but files, directories and links are recorded as
 * unusable: a blob must be a plain run of bytes.
 */
import type { FileHandle } from 'node:fs/promises';
import { posix } from 'node:path';
import { InputError } from '../errors.js';

export type MemberType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarMember {
  /** Normalised name: no leading `./` or `/`, no empty components. */
  name: string;
  type: MemberType;
  /** Offset of the data in the archive. */
  offset: number;
  size: number;
  linkname: string;
}

const BLOCK = 512;
/** A PAX or GNU long-name record bigger than this is hostile, not a long name. */
const MAX_META_RECORD = 1 << 20;
/**
 * Members indexed before we call the archive a bomb: an image has a few per blob, and the index
 * lives in memory (~150 bytes a member), so this also bounds what a hostile archive can cost.
 */
const MAX_MEMBERS = 100_000;

function cString(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end === -1 || end > start + len ? start + len : end);
}

function parseNumeric(buf: Buffer, start: number, len: number, what: string, file: string): number {
  const first = buf[start] ?? 0;
  if (first & 0x80) {
    // base-256 (GNU): big-endian two's complement; negative sizes are nonsense here
    if (first & 0x40) throw new InputError(`tar header has a negative ${what}`, { file });
    let v = first & 0x3f;
    for (let i = 1; i < len; i++) {
      v = v * 256 + (buf[start + i] ?? 0);
      if (!Number.isSafeInteger(v)) throw new InputError(`tar header ${what} is too large`, { file });
    }
    return v;
  }
  const text = buf.toString('latin1', start, start + len).replace(/[\0 ]+$/, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new InputError(`tar header has a malformed ${what} ${JSON.stringify(text)}`, { file });
  return parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number);
  const text = h.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').trim();
  return /^[0-7]+$/.test(text) && parseInt(text, 8) === sum;
}

/** Parses PAX records (`LEN key=value\n`), keeping the keys we use. */
function parsePax(data: Buffer, file: string): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    if (space === -1) break;
    const len = Number(data.toString('latin1', pos, space));
    if (!Number.isSafeInteger(len) || len <= space - pos || pos + len > data.length)
      throw new InputError('tar archive has a malformed PAX record', { file });
    const record = data.toString('utf8', space + 1, pos + len - 1);
    const eq = record.indexOf('=');
    if (eq > 0) out.set(record.slice(0, eq), record.slice(eq + 1));
    pos += len;
  }
  return out;
}

export function normaliseMemberName(name: string): string {
  return posix.normalize('/' + name).slice(1).replace(/\/$/, '');
}

async function readExactly(fh: FileHandle, length: number, position: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

/** Reads every header of the archive open in `fh` (of `fileSize` bytes). */
export async function indexTar(fh: FileHandle, fileSize: number, file: string): Promise<Map<string, TarMember>> {
  const members = new Map<string, TarMember>();
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  let count = 0;
  while (pos + BLOCK <= fileSize) {
    const h = await readExactly(fh, BLOCK, pos);
    if (h.length < BLOCK) break;
    if (h.every((b) => b === 0)) break; // end-of-archive marker
    if (!checksumOk(h)) throw new InputError(`not a tar archive, or corrupt: bad header checksum at offset ${pos}`, { file });
    if (++count > MAX_MEMBERS) throw new InputError(`tar archive has more than ${MAX_MEMBERS} members`, { file });
    const flag = String.fromCharCode(h[156] as number);
    let size = parseNumeric(h, 124, 12, 'size', file);
    const dataOffset = pos + BLOCK;
    const paddedEnd = (s: number) => dataOffset + Math.ceil(s / BLOCK) * BLOCK;
    const readMeta = async (): Promise<Buffer> => {
      if (size > MAX_META_RECORD) throw new InputError(`tar archive has an oversized ${flag} record at offset ${pos}`, { file });
      const data = await readExactly(fh, size, dataOffset);
      if (data.length < size) throw new InputError(`tar archive is truncated at offset ${pos}`, { file });
      return data;
    };
    if (flag === 'x') {
      pax = parsePax(await readMeta(), file);
      pos = paddedEnd(size);
      continue;
    }
    if (flag === 'g') {
      pos = paddedEnd(size); // global headers carry nothing we use
      continue;
    }
    if (flag === 'L' || flag === 'K') {
      const text = (await readMeta()).toString('utf8').replace(/\0.*$/s, '');
      if (flag === 'L') longName = text;
      else longLink = text;
      pos = paddedEnd(size);
      continue;
    }
    const magic = h.toString('latin1', 257, 263);
    const prefix = magic === 'ustar\0' ? cString(h, 345, 155) : '';
    let name = longName ?? (prefix ? `${prefix}/${cString(h, 0, 100)}` : cString(h, 0, 100));
    let linkname = longLink ?? cString(h, 157, 100);
    if (pax.has('path')) name = pax.get('path') as string;
    if (pax.has('linkpath')) linkname = pax.get('linkpath') as string;
    if (pax.has('size')) {
      const s = pax.get('size') as string;
      if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) throw new InputError(`tar archive has a malformed PAX size`, { file });
      size = Number(s);
    }
    longName = longLink = undefined;
    pax = new Map();
    let type: MemberType;
    switch (flag) {
      case '0':
      case '\0':
      case '7':
        type = name.endsWith('/') ? 'dir' : 'file';
        break;
      case '5':
        type = 'dir';
        break;
      case '2':
        type = 'symlink';
        break;
      case '1':
        type = 'hardlink';
        break;
      default:
        type = 'other'; // devices, fifos, GNU sparse ('S'): never a blob
    }
    if (flag === '1' || flag === '2') size = 0; // links carry no data of their own
    if (dataOffset + size > fileSize) throw new InputError(`tar archive is truncated: member ${JSON.stringify(name)} runs past the end`, { file });
    const norm = normaliseMemberName(name);
    members.set(norm, { name: norm, type, offset: dataOffset, size, linkname });
    pos = paddedEnd(size);
  }
  return members;
}

/** Follows symlinks and hardlinks within the archive (never out of it) to a regular file member. */
export function resolveMember(members: Map<string, TarMember>, name: string, file: string): TarMember | undefined {
  let current = normaliseMemberName(name);
  for (let hops = 0; hops < 16; hops++) {
    const m = members.get(current);
    if (m === undefined) return undefined;
    if (m.type === 'file') return m;
    if (m.type === 'hardlink') current = normaliseMemberName(m.linkname);
    else if (m.type === 'symlink') {
      const target = posix.join(posix.dirname(m.name), m.linkname);
      if (m.linkname.startsWith('/') || target === '..' || target.startsWith('../'))
        throw new InputError(`archive member ${JSON.stringify(m.name)} links outside the archive (${JSON.stringify(m.linkname)})`, { file });
      current = normaliseMemberName(target);
    } else return undefined;
  }
  throw new InputError(`archive member ${JSON.stringify(name)}: too many levels of links`, { file });
}
