/**
 * A rootfs's user database (/etc/passwd, /etc/group) as text, read inside the root (a link out
 * of it is not followed) and bounded: the rootfs is hostile, and a real database is a few KiB.
 */
import { InputError } from '../errors.js';
import { readFileInRoot } from './read.js';

/** Larger than any real /etc/passwd or /etc/group. */
export const MAX_USERDB_BYTES = 4 << 20;

export interface UserDb {
  /** undefined where the file is missing */
  passwd: string | undefined;
  group: string | undefined;
}

/** Throws an InputError naming the file inside the rootfs (`/etc/group in the rootfs: …`); the caller says which rootfs. */
export async function readUserDb(rootfs: string): Promise<UserDb> {
  const read = (path: string) =>
    readFileInRoot(rootfs, path, MAX_USERDB_BYTES).then(
      (b) => b?.toString('utf8'),
      (e: unknown) => {
        throw e instanceof InputError ? new InputError(`${path} in the rootfs: ${e.reason}`) : e;
      },
    );
  return { passwd: await read('/etc/passwd'), group: await read('/etc/group') };
}
