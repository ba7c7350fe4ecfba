/**
 * Which ocivirt instance this is. Several instances (daemons on other spools, a `sync --once` or
 * `plan` with another state directory, a test run) can share one libvirtd; each domain records
 * the instance that made it, and an instance changes or deletes only its own.
 *
 * The identity is a random id kept in the state directory (`instance-id`), made once and never
 * changed: it survives a move or rename of the spool, and the daemon, `sync --once` and `plan`
 * with the same `--state` share it. Another state directory is another instance. It is created
 * crash-safe and race-free: written whole and fsynced under a temporary name, then hard-linked
 * to its final name, so a reader sees either no file or the complete one, and of two processes
 * creating it at once the first link wins and the other reads the winner's id.
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { createFileExclusively } from '../fsroot/atomic.js';
import { readSmallRegularFile, UnreadableFile } from '../spool/read.js';

export const INSTANCE_FILE = 'instance-id';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The id kept in `stateDir`, or undefined when there is none yet (`plan` reads, never writes:
 * an instance without an id owns no stamped domain yet). A damaged file is an error, never a
 * reason to make a new id: that would disown every domain this instance made.
 */
export async function readInstanceId(stateDir: string): Promise<string | undefined> {
  const file = join(stateDir, INSTANCE_FILE);
  let data: Buffer;
  try {
    ({ data } = await readSmallRegularFile(file, 1024));
  } catch (e) {
    if (e instanceof UnreadableFile && e.code === 'ENOENT') return undefined;
    if (e instanceof UnreadableFile) throw new InputError(`${e.message}: it holds this ocivirt instance's id; restore it or remove it to make a new one (domains stamped with the old id are then left alone)`, { file });
    throw e;
  }
  const id = data.toString('utf8').trim();
  if (!ID.test(id)) throw new InputError('is not an ocivirt instance id (a UUID): restore it, or remove it to make a new one (domains stamped with the old id are then left alone)', { file });
  return id;
}

/** The id kept in `stateDir`, made now when there is none. */
export async function ensureInstanceId(stateDir: string): Promise<string> {
  const have = await readInstanceId(stateDir);
  if (have !== undefined) return have;
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const id = randomUUID();
  // two processes starting at once: the first link wins, the other reads the winner's id
  await createFileExclusively(join(stateDir, INSTANCE_FILE), `${id}\n`, 0o600).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  const won = await readInstanceId(stateDir);
  if (won === undefined) throw new Error(`${join(stateDir, INSTANCE_FILE)}: vanished right after it was made`);
  return won;
}
