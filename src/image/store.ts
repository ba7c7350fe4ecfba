/**
 * Where an image's files live: a directory or an uncompressed tar archive. Formats (OCI layout,
 * docker-save) are read through this one interface, so each works from either container and the
 * archive is never extracted. Names given here are relative; every lookup stays inside the
 * directory (symlinks resolved as if it were `/`) or inside the archive.
 */
import { createReadStream } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { InputError } from '../errors.js';
import { resolveInRoot } from '../fsroot/resolve.js';
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

async function readLimited(stream: Readable, maxBytes: number, label: string, file: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > maxBytes) {
      stream.destroy();
      throw new InputError(`${label} is larger than the ${maxBytes}-byte limit for JSON documents`, { file });
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export class DirStore implements FileStore {
  readonly kind = 'directory';
  constructor(readonly path: string) {}

  private async regular(name: string): Promise<{ host: string; size: number } | undefined> {
    const host = await resolveInRoot(this.path, name);
    try {
      const st = await lstat(host);
      return st.isFile() ? { host, size: st.size } : undefined;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  async size(name: string): Promise<number | undefined> {
    return (await this.regular(name))?.size;
  }

  async open(name: string): Promise<Readable> {
    const f = await this.regular(name);
    if (f === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    return createReadStream(f.host, { highWaterMark: 1 << 16 });
  }

  async head(name: string, n: number): Promise<Buffer> {
    const f = await this.regular(name);
    if (f === undefined) throw new InputError(`missing file ${name}`, { file: this.path });
    const fh = await open(f.host, 'r');
    try {
      const buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, n, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  async readSmall(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const f = await this.regular(name);
    if (f === undefined) return undefined;
    if (f.size > maxBytes) throw new InputError(`${name} is larger than the ${maxBytes}-byte limit for JSON documents`, { file: this.path });
    return readLimited(createReadStream(f.host), maxBytes, name, this.path);
  }

  async close(): Promise<void> {}
}

export class TarStore implements FileStore {
  readonly kind = 'archive';
  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly members: Map<string, TarMember>,
  ) {}

  static async open(path: string): Promise<TarStore> {
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat();
      return new TarStore(path, fh, await indexTar(fh, st.size, path));
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
    // stream closes its fd, which must not be the one the index reads through (a swapped file
    // is caught by the digest checks)
    return createReadStream(this.path, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: 1 << 16 });
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
