/**
 * Reading small metadata files (config.json, index.json) out of the spool without being fooled:
 * never through a symlink (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK), only regular
 * files (checked on the open handle, so a swap after lstat does not help), and bounded in size.
 */
import { constants, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';

/** Larger than any real config.json or index.json (podman's, with seccomp, is ~25 KiB). */
export const MAX_METADATA_BYTES = 16 * 1024 * 1024;

export class UnreadableFile extends Error {
  override name = 'UnreadableFile';
  /** The errno code behind it (ENOENT: the file is missing), when there is one. */
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

export async function readSmallRegularFile(path: string, limit = MAX_METADATA_BYTES): Promise<{ data: Buffer; stat: Stats }> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
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
    const data = Buffer.alloc(stat.size);
    let read = 0;
    while (read < stat.size) {
      const { bytesRead } = await handle.read(data, read, stat.size - read, read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    return { data: data.subarray(0, read), stat };
  } finally {
    await handle.close();
  }
}
