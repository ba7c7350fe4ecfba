/**
 * Where an image's files live: a directory or an uncompressed tar archive. Formats (OCI layout,
 * docker-save) are read through this one interface, so each works from either container and the
 * archive is never extracted. Names given here are relative; every lookup stays inside the
 * directory (symlinks resolved as if it were `/`) or inside the archive.
 */
import { createReadStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { lstat, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { InputError } from '../errors.js';
import { resolveInRoot } from '../fsroot/resolve.js';
import { openSpoolEntry, openSpoolFileIn, readAll, UnreadableFile, type HeldEntry } from '../spool/read.js';
import { indexTar, resolveMember, type TarMember } from './tar-index.js';

export interface FileStore {
  /** The path the operator gave (for messages). */
  readonly path: string;
  readonly kind: 'directory' | 'archive';
  /** Size of a regular file, or undefined if there is none by that name. */
  size(name: string): Promise<number | undefined>;
  /** Streams a regular file's bytes. */
  open(name: string): Promise<Readable>;
  /** The first `n` bytes (fewer if the file is shorter), to sniff compression. */
  head(name: string, n: number): Promise<Buffer>;
  /** Reads a small file whole, refusing more than `maxBytes`. */
  readSmall(name: string, maxBytes: number): Promise<Buffer | undefined>;
  close(): Promise<void>;
}

/**
 * An image directory held open (a spool entry: see openSpoolEntry): names are resolved inside
 * the directory that was opened, never through its path again, and every file opened is checked
 * to lie inside it.
 */
export class DirStore implements FileStore {
  readonly kind = 'directory';
  private constructor(
    readonly path: string,
    private readonly dir: HeldEntry,
  ) {}

  static async open(path: string): Promise<DirStore> {
    return new DirStore(path, await openEntry(path, 'directory'));
  }

  /** The host path of `name`, resolved inside the directory (through the open handle). */
  private host(name: string): Promise<string> {
    return resolveInRoot(this.dir.at, name);
  }

  async size(name: string): Promise<number | undefined> {
    try {
      const st = await lstat(await this.host(name));
      return st.isFile() ? st.size : undefined;
    } catch (e) {
      if (isGone(e)) return undefined;
      throw e;
    }
  }

  /**
   * Opened through the spool's one safe reader (no symlink, no FIFO, regular only, inside the
   * directory), at most `limit` bytes; undefined when missing.
   */
  private async opened(name: string, limit?: number): Promise<{ handle: FileHandle; stat: Stats } | undefined> {
    try {
      return await openSpoolFileIn(this.dir, await this.host(name), limit);
    } catch (e) {
      if (isGone(e) || (e instanceof UnreadableFile && e.code === 'ENOENT')) return undefined;
      if (e instanceof UnreadableFile && e.code === 'EFBIG')
        throw new InputError(`${name} is larger than the ${limit}-byte limit for JSON documents`, { file: this.path });
      if (e instanceof UnreadableFile) throw new InputError(`${name} ${e.message}`, { file: this.path });
      throw e;
    }
  }

  async open(name: string): Promise<Readable> {
    const f = await this.opened(name);
    if (f === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    return f.handle.createReadStream({ highWaterMark: 1 << 16 });
  }

  async head(name: string, n: number): Promise<Buffer> {
    const f = await this.opened(name);
    if (f === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    try {
      const buf = Buffer.alloc(n);
      const { bytesRead } = await f.handle.read(buf, 0, n, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await f.handle.close();
    }
  }

  async readSmall(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const f = await this.opened(name, maxBytes);
    if (f === undefined) return undefined;
    try {
      return await readAll(f.handle, f.stat, maxBytes);
    } catch (e) {
      if (e instanceof UnreadableFile) throw new InputError(`${name} is larger than the ${maxBytes}-byte limit for JSON documents`, { file: this.path });
      throw e;
    } finally {
      await f.handle.close();
    }
  }

  async close(): Promise<void> {
    await this.dir.close();
  }
}

/** A spool entry held open, its refusals as InputErrors naming it. */
export async function openEntry(path: string, kind: 'directory' | 'file'): Promise<HeldEntry> {
  try {
    return await openSpoolEntry(path, kind);
  } catch (e) {
    throw e instanceof UnreadableFile ? new InputError(e.message, { file: path }) : e;
  }
}

function isGone(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export class TarStore implements FileStore {
  readonly kind = 'archive';
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly members: Map<string, TarMember>,
  ) {}

  /** `label`: the name messages give it (the spool's archive, when `path` is its inflated copy). */
  static async open(path: string, label = path): Promise<TarStore> {
    let file: HeldEntry;
    try {
      file = await openSpoolEntry(path, 'file');
    } catch (e) {
      throw e instanceof UnreadableFile ? new InputError(e.message, { file: label }) : e;
    }
    return TarStore.of(label, file);
  }

  /** The archive held open as `file`, named `label` (closed with the store, or here on failure). */
  static async of(label: string, file: HeldEntry): Promise<TarStore> {
    try {
      return new TarStore(label, file.handle, await indexTar(file.handle, file.stat.size, label));
    } catch (e) {
      await file.close();
      throw e;
    }
  }

  private member(name: string): TarMember | undefined {
    return resolveMember(this.members, name, this.path);
  }

  async size(name: string): Promise<number | undefined> {
    return this.member(name)?.size;
  }

  async open(name: string): Promise<Readable> {
    const m = this.member(name);
    if (m === undefined) throw new InputError(`missing archive member ${name}`, { file: this.path });
    if (m.size === 0) return Readable.from([]);
    // each blob stream opens the archive for itself and reads its own byte range: a destroyed
    // stream closes its fd, which must not be the one the index reads through. It reopens the
    // very file the index read (through /proc/self/fd), never the path, which may lead elsewhere now.
    return createReadStream(`/proc/self/fd/${this.fh.fd}`, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 16 });
  }

  async head(name: string, n: number): Promise<Buffer> {
    const m = this.member(name);
    if (m === undefined) throw new InputError(`missing archive member ${name}`, { file: this.path });
    const buf = Buffer.alloc(Math.min(n, m.size));
    const { bytesRead } = await this.fh.read(buf, 0, buf.length, m.offset);
    return buf.subarray(0, bytesRead);
  }

  async readSmall(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const m = this.member(name);
    if (m === undefined) return undefined;
    if (m.size > maxBytes) throw new InputError(`${name} is larger than the ${maxBytes}-byte limit for JSON documents`, { file: this.path });
    const buf = Buffer.alloc(m.size);
    const { bytesRead } = await this.fh.read(buf, 0, m.size, m.offset);
    if (bytesRead !== m.size) throw new InputError(`archive member ${name} is truncated`, { file: this.path });
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
