/**
 * The one way to read a file out of the spool (config.json, index.json, an image's blobs and
 * archives …) without being fooled: one open, never through a symlink (O_NOFOLLOW), never
 * blocking on a FIFO or a device (O_NONBLOCK, O_NOCTTY), only regular files (checked with fstat
 * on the open handle, so a swap after any earlier lstat does not help), bounded in size, and
 * everything after the open done through that handle, never by path again.
 */
import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** Larger than any real config.json or index.json (podman's, with seccomp, is ~25 KiB). */
export const MAX_METADATA_BYTES = 16 * 1024 * 1024;

export class UnreadableFile extends Error {
  override name = 'UnreadableFile';
  /** The errno code behind it (ENOENT: the file is missing), when there is one; `directory`: it was the directory's. */
  constructor(
    message: string,
    readonly code?: string,
    readonly directory = false,
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
    if (stat.size > limit) throw new UnreadableFile(`is larger than ${limit} bytes`);
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
    const data = Buffer.alloc(Math.min(stat.size, limit) + 1);
    let read = 0;
    while (read < data.length) {
      const { bytesRead } = await handle.read(data, read, data.length - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    if (read > limit) throw new UnreadableFile(`is larger than ${limit} bytes`);
    return { data: data.subarray(0, read), stat };
  } finally {
    await handle.close();
  }
}

/**
 * `name` inside the directory `dir`, where `dir` itself must not be a symlink either: the
 * directory is opened first (O_DIRECTORY | O_NOFOLLOW) and the file read relative to that open
 * directory (through /proc/self/fd, Linux's openat), so swapping the directory for a link after
 * a scan leads nowhere.
 */
export async function readSmallFileIn(dir: string, name: string, limit = MAX_METADATA_BYTES): Promise<{ data: Buffer; stat: Stats }> {
  let d: FileHandle;
  try {
    d = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR') throw new UnreadableFile('its directory is a symlink or not a directory', code, true);
    if (code === 'ENOENT') throw new UnreadableFile('its directory is missing', code, true);
    throw new UnreadableFile(`its directory cannot be opened (${code ?? (e as Error).message})`, code, true);
  }
  try {
    return await readSmallRegularFile(`/proc/self/fd/${d.fd}/${name}`, limit);
  } finally {
    await d.close();
  }
}
