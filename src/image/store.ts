/**
 * Where an image's files live: a directory or an uncompressed tar archive. Formats (OCI layout,
 * docker-save) are read through this one interface, so each works from either container and the
 * archive is never extracted. Names given here are relative; every lookup stays inside the
 * directory (symlinks resolved as if it were `/`) or inside the archive.
 */
import { createReadStream } from 'node:fs';
import { lstat, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { InputError } from '../errors.js';
import { resolveInRoot } from '../fsroot/resolve.js';
import { openSpoolFile, readSmallRegularFile, UnreadableFile } from '../spool/read.js';
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

export class DirStore implements FileStore {
  readonly kind = 'directory';
  constructor(readonly path: string) {}

  /** The host path of `name`, resolved inside the directory. */
  private host(name: string): Promise<string> {
    return resolveInRoot(this.path, name);
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

  /** Opened through the spool's one safe reader (no symlink, no FIFO, regular only); undefined when missing. */
  private async opened(name: string, limit?: number): Promise<FileHandle | undefined> {
    try {
      return (await openSpoolFile(await this.host(name), limit)).handle;
    } catch (e) {
      if (isGone(e) || (e instanceof UnreadableFile && e.code === 'ENOENT')) return undefined;
      if (e instanceof UnreadableFile) throw new InputError(`${name} ${e.message}`, { file: this.path });
      throw e;
    }
  }

  async open(name: string): Promise<Readable> {
    const fh = await this.opened(name);
    if (fh === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    return fh.createReadStream({ highWaterMark: 1 << 16 });
  }

  async head(name: string, n: number): Promise<Buffer> {
    const fh = await this.opened(name);
    if (fh === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    try {
      const buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, n, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  async readSmall(name: string, maxBytes: number): Promise<Buffer | undefined> {
    try {
      return (await readSmallRegularFile(await this.host(name), maxBytes)).data;
    } catch (e) {
      if (isGone(e) || (e instanceof UnreadableFile && e.code === 'ENOENT')) return undefined;
      if (e instanceof UnreadableFile && e.message.startsWith('is larger than'))
        throw new InputError(`${name} is larger than the ${maxBytes}-byte limit for JSON documents`, { file: this.path });
      if (e instanceof UnreadableFile) throw new InputError(`${name} ${e.message}`, { file: this.path });
      throw e;
    }
  }

  async close(): Promise<void> {}
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
    let fh: FileHandle;
    try {
      fh = (await openSpoolFile(path)).handle;
    } catch (e) {
      throw e instanceof UnreadableFile ? new InputError(e.message, { file: label }) : e;
    }
    try {
      const st = await fh.stat();
      return new TarStore(label, fh, await indexTar(fh, st.size, label));
    } catch (e) {
      await fh.close();
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
