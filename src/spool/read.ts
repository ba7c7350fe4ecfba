/**
 * The one way to read a file out of the spool (config.json, index.json, an image's blobs and
 * archives …) without being fooled: one open, never through a symlink (O_NOFOLLOW), never
 * blocking on a FIFO or a device (O_NONBLOCK, O_NOCTTY), only regular files (checked with fstat
 * on the open handle, so a swap after any earlier lstat does not help), bounded in size, and
 * everything after the open done through that handle, never by path again.
 *
 * The same holds for a spool entry itself (a bundle or image-layout directory, an archive): it
 * is opened once (`openSpoolEntry`) and everything inside it is reached through that open
 * handle, so swapping the entry for a symlink to a host directory after the scan leads nowhere.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, readlink, type FileHandle } from 'node:fs/promises';

/** Larger than any real config.json or index.json (podman's, with seccomp, is ~25 KiB). */
export const MAX_METADATA_BYTES = 16 * 1024 * 1024;

export class UnreadableFile extends Error {
  override name = 'UnreadableFile';
  /** The errno code behind it (ENOENT: the file is missing; EFBIG: over the size limit), when there is one. */
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

const SPOOL_OPEN = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** The file opened and checked (regular, at most `limit` bytes); the caller closes the handle. */
export async function openSpoolFile(path: string, limit = Infinity): Promise<{ handle: FileHandle; stat: Stats }> {
  let handle: FileHandle;
  try {
    handle = await open(path, SPOOL_OPEN);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new UnreadableFile('is a symlink', code);
    if (code === 'ENOENT') throw new UnreadableFile('is missing', code);
    throw new UnreadableFile(`cannot be opened (${code ?? (e as Error).message})`, code);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new UnreadableFile('is not a regular file');
    if (stat.size > limit) throw new UnreadableFile(`is larger than ${limit} bytes`, 'EFBIG');
    return { handle, stat };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** The whole file, at most `limit` bytes (one more is read, so a file that grew after fstat is caught). */
export async function readSmallRegularFile(path: string, limit = MAX_METADATA_BYTES): Promise<{ data: Buffer; stat: Stats }> {
  const { handle, stat } = await openSpoolFile(path, limit);
  try {
    return { data: await readAll(handle, stat, limit), stat };
  } finally {
    await handle.close();
  }
}

/** What `handle` (`stat` its fstat) holds, at most `limit` bytes. */
export async function readAll(handle: FileHandle, stat: Stats, limit: number): Promise<Buffer> {
  const data = Buffer.alloc(Math.min(stat.size, limit) + 1);
  let read = 0;
  while (read < data.length) {
    const { bytesRead } = await handle.read(data, read, data.length - read, read);
    if (bytesRead === 0) break;
    read += bytesRead;
  }
  if (read > limit) throw new UnreadableFile(`is larger than ${limit} bytes`, 'EFBIG');
  return data.subarray(0, read);
}

/**
 * A spool entry held open. `at` is `/proc/self/fd/N`, Linux's openat for path-based calls: a
 * path under it is resolved from the directory (or file) that was opened, whatever the entry's
 * name in the spool leads to now.
 */
export interface HeldEntry {
  readonly at: string;
  readonly handle: FileHandle;
  readonly stat: Stats;
  /**
   * Where the entry is now, as the kernel names it (no symlink in it). Not realpath(`at`):
   * realpath(3) resolves that text again, component by component, and a swap meanwhile would
   * lead it elsewhere.
   */
  real(): Promise<string>;
  close(): Promise<void>;
}

/** Tests only: called right after an entry is opened, to swap its path as a hostile writer would. */
export const entryTestHooks: { afterOpen?: (path: string) => void } = {};

/**
 * Opens the spool entry `path` once: a directory (O_DIRECTORY: anything else is refused without
 * being opened) or a regular file (as `openSpoolFile`), never through a symlink. The caller
 * closes it when done with everything inside.
 */
export async function openSpoolEntry(path: string, kind: 'directory' | 'file'): Promise<HeldEntry> {
  let held: { handle: FileHandle; stat: Stats };
  if (kind === 'file') held = await openSpoolFile(path);
  else {
    let handle: FileHandle;
    try {
      handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NOCTTY);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // a symlink fails O_DIRECTORY before O_NOFOLLOW (ENOTDIR): the lstat only words the refusal
      const link = code === 'ELOOP' || (code === 'ENOTDIR' && (await lstat(path).catch(() => undefined))?.isSymbolicLink());
      if (link) throw new UnreadableFile('is a symlink', 'ELOOP');
      if (code === 'ENOTDIR') throw new UnreadableFile('is not a directory', code);
      if (code === 'ENOENT') throw new UnreadableFile('is missing', code);
      throw new UnreadableFile(`cannot be opened (${code ?? (e as Error).message})`, code);
    }
    try {
      held = { handle, stat: await handle.stat() };
    } catch (e) {
      await handle.close();
      throw e;
    }
  }
  entryTestHooks.afterOpen?.(path);
  const at = `/proc/self/fd/${held.handle.fd}`;
  return { at, ...held, real: () => readlink(at), close: () => held.handle.close() };
}

/** `fn` with the entry held open (see `openSpoolEntry`), closed after. */
export async function withSpoolEntry<T>(path: string, kind: 'directory' | 'file', fn: (entry: HeldEntry) => Promise<T>): Promise<T> {
  const entry = await openSpoolEntry(path, kind);
  try {
    return await fn(entry);
  } finally {
    await entry.close();
  }
}

/**
 * `openSpoolFile` for a path the caller resolved inside the held directory `dir`, checked after
 * the open: the kernel's own path of what was opened must lie inside the directory's. Between a
 * resolution and the open a hostile writer can swap a component (`blobs/`) for a symlink out;
 * O_NOFOLLOW guards only the last one, this check every one.
 */
export async function openSpoolFileIn(dir: HeldEntry, path: string, limit = Infinity): Promise<{ handle: FileHandle; stat: Stats }> {
  const opened = await openSpoolFile(path, limit);
  try {
    const [where, inside] = await Promise.all([dir.real(), readlink(`/proc/self/fd/${opened.handle.fd}`)]);
    if (!inside.startsWith(where === '/' ? '/' : `${where}/`)) throw new UnreadableFile(`leads out of its directory (to ${inside})`);
    return opened;
  } catch (e) {
    await opened.handle.close();
    throw e;
  }
}
