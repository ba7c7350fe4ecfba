/**
 * A file replaced whole or not at all, durably: written to a temporary name beside it (created
 * exclusively, never through a symlink someone planted), synced, renamed over the target, and
 * the directory synced so the rename survives a crash. The one way ocivirt writes its records,
 * status and exported configs.
 */
import { constants } from 'node:fs';
import { link, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

let sequence = 0;

export async function writeFileAtomically(path: string, data: string, mode: number): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${++sequence}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await syncDirectory(dir);
}

/**
 * A new file, whole or not at all, never replacing one: written aside, synced, then linked to its
 * name (EEXIST when the name is taken: whoever linked first won), and the directory synced.
 */
export async function createFileExclusively(path: string, data: string, mode: number): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${++sequence}.new`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  await syncDirectory(dir);
}

export async function syncDirectory(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
