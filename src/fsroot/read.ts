/**
 * Reading a small file of a rootfs from the host (e.g. /etc/passwd for User lookups) without ever
 * leaving the rootfs: parents are resolved inside the root, the last component is followed inside
 * the root too, and the final open refuses a symlink (O_NOFOLLOW) and never blocks on a fifo.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { resolveInRoot } from './resolve.js';

/**
 * The content of `path` inside `root`, or undefined if it does not exist. InputError (field =
 * the path) if it is not a regular file or is larger than `maxBytes`.
 */
export async function readFileInRoot(root: string, path: string, maxBytes: number): Promise<Buffer | undefined> {
  const hostPath = await resolveInRoot(root, path);
  let handle;
  try {
    handle = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw new InputError('is a symlink that loops or leaves the rootfs', { field: path });
    throw e;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new InputError('is not a regular file', { field: path });
    if (st.size > maxBytes) throw new InputError(`is larger than ${maxBytes} bytes`, { field: path });
    // Read one byte more than allowed, so a file that grew after fstat is still caught.
    const buf = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new InputError(`is larger than ${maxBytes} bytes`, { field: path });
    }
    return buf.subarray(0, length);
  } finally {
    await handle.close();
  }
}
