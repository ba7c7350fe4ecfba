/**
 * The volume store: `<state>/volumes/<name>/` is the volume's data, mounted into the domain as it
 * is. The volumes directory is ocivirt's own: created 0700 and checked like the state directory
 * (owner and mode, no symlink), and so is each volume (a real directory, never a symlink, so a
 * swapped volume is refused, not followed).
 *
 * A volume is made once, Docker's way: seeded with the image's files at its path (owners and modes
 * kept), their owners moved into the container's mapped range when it has a user namespace. It is
 * built under a staging name and renamed into place, so a crash leaves either no volume (the stale
 * staging directory is removed next time) or a whole one; an existing volume is never seeded again,
 * emptied or removed here.
 */
import type { Dirent } from 'node:fs';
import { chmod, lchown, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { resolveInRoot } from '../fsroot/resolve.js';
import type { IdMapping } from '../oci/runtime-spec.js';
import { copyTree } from '../fsroot/copy.js';
import { oneAtATime } from '../one-at-a-time.js';
import { openSpoolEntry, UnreadableFile, type HeldEntry } from '../spool/read.js';
import { checkDirectoryTrust } from '../spool/trust.js';
import { isVolumeName, volumesDir } from './names.js';

export interface IdMap {
  uid: readonly IdMapping[];
  gid: readonly IdMapping[];
}

export interface VolumeSeed {
  /** The tree the container runs (or its pristine image): the files at `path` inside it seed the volume. */
  root: string;
  /** The container path the volume is mounted at. */
  path: string;
}

export interface EnsureOptions {
  seed?: VolumeSeed;
  /** The container's user namespace mappings: seeded owners are moved into the host range. */
  idmap?: IdMap;
  /** Ends a seed copy (the entry's deadline, the daemon stopping). */
  signal?: AbortSignal;
}

/** The volumes directory, created 0700 when absent, refused when anyone but its owner could change it. */
export async function volumesRoot(stateDir: string): Promise<string> {
  const dir = volumesDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) throw new InputError('is not a directory of ocivirt\'s own (a symlink or another file): refused', { file: dir });
  await checkDirectoryTrust(dir);
  if (st.mode & 0o077) await chmod(dir, 0o700); // volumes may hold secrets: ocivirt's alone
  return dir;
}

/** The volume's directory, made (and seeded) when it does not exist yet. */
export function ensureVolume(stateDir: string, name: string, opts: EnsureOptions = {}): Promise<string> {
  if (!isVolumeName(name)) throw new InputError(`${JSON.stringify(name)} is not a volume name (letters, digits, _ . -; no "/")`);
  const path = join(volumesDir(stateDir), name);
  return oneAtATime(path, async () => {
    const root = await volumesRoot(stateDir);
    if (await existingVolume(path)) return path;
    await removeStale(root, name);
    const staging = join(root, `.new-${name}-${process.pid}-${Date.now().toString(36)}`);
    try {
      await seedInto(staging, opts);
      await rename(staging, path).catch(async (e: NodeJS.ErrnoException) => {
        // another process made it first: theirs is the volume
        if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
        await rm(staging, { recursive: true, force: true });
      });
    } catch (e) {
      await rm(staging, { recursive: true, force: true });
      throw e;
    }
    if (!(await existingVolume(path))) throw new Error(`${path}: the volume vanished while it was made`);
    return path;
  });
}

/** True for a volume directory, false when there is none; refuses anything else in its place. */
export async function existingVolume(path: string): Promise<boolean> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  if (st.isSymbolicLink() || !st.isDirectory())
    throw new InputError(`is a ${st.isSymbolicLink() ? 'symlink' : 'non-directory'}, not a volume ocivirt made: refused (remove it to let ocivirt make the volume)`, { file: path });
  return true;
}

/** Staging directories of this name left by a process that is gone (a crash while seeding). */
async function removeStale(root: string, name: string): Promise<void> {
  const prefix = `.new-${name}-`;
  for (const f of await readdir(root)) {
    if (!f.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)-/.exec(f.slice(prefix.length))?.[1]);
    if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) continue;
    await rm(join(root, f), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * `staging` made: a copy of the seed's directory when the image has one at the path (resolved
 * inside the image's root, so a symlink there never leads out of it), else an empty directory
 * owned by the container's root.
 */
async function seedInto(staging: string, opts: EnsureOptions): Promise<void> {
  const source = opts.seed ? await heldSeed(opts.seed) : undefined;
  if (source !== undefined) {
    try {
      // the directory held open, reached by cp through this process's descriptor: whatever its
      // path (or a component of it) is swapped for meanwhile, cp copies what was checked; cp -a
      // never follows a symlink inside the tree
      await copyTree(`/proc/${process.pid}/fd/${source.handle.fd}/.`, staging, opts.signal);
    } finally {
      await source.close();
    }
  } else {
    await mkdir(staging, { mode: 0o755 });
    await lchown(staging, 0, 0);
  }
  if (opts.idmap) await chownIntoRange(staging, opts.idmap);
}

/** Tests only: called with the seed path once resolved, before it is opened (a hostile swap's moment). */
export const seedTestHooks: { afterResolve?: (resolved: string) => void } = {};

/**
 * The seed's directory, opened (no symlink as its last step) and checked to lie inside the seed
 * root as the kernel names both; undefined when the image has no directory there. A path that
 * leads out (a component swapped for a symlink after it was resolved) is refused.
 */
async function heldSeed(seed: VolumeSeed): Promise<HeldEntry | undefined> {
  const root = await openSpoolEntry(seed.root, 'directory');
  try {
    let dir: HeldEntry;
    try {
      const resolved = await resolveInRoot(root.at, seed.path);
      seedTestHooks.afterResolve?.(resolved);
      dir = await openSpoolEntry(resolved, 'directory');
    } catch (e) {
      if (e instanceof UnreadableFile && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) return undefined; // no directory there: an empty volume
      throw e instanceof UnreadableFile ? new InputError(`${seed.path} ${e.message}: not seeded into a volume`, { file: seed.root }) : e;
    }
    const [where, inside] = await Promise.all([root.real(), dir.real()]);
    if (inside !== where && !inside.startsWith(where === '/' ? '/' : `${where}/`)) {
      await dir.close();
      throw new InputError(`${seed.path} leads out of its directory (to ${inside}): not seeded into a volume`, { file: seed.root });
    }
    return dir;
  } finally {
    await root.close();
  }
}

/**
 * An owner id as the container's user namespace shows it: an id already in the host range of a
 * mapping is kept (a bundle's rootfs is owned by host ids already), an id in a container range
 * is moved to its host id, anything else becomes the mapped root's (never left a host id the
 * container cannot name).
 */
export function mapIntoRange(id: number, map: readonly IdMapping[]): number {
  if (map.some((m) => id >= m.hostID && id < m.hostID + m.size)) return id;
  const m = map.find((m) => id >= m.containerID && id < m.containerID + m.size);
  if (m) return m.hostID + (id - m.containerID);
  const root = map.find((m) => m.containerID === 0);
  return root ? root.hostID : id;
}

/** Every owner under `dir` (itself included) moved into the mapped range; symlinks are changed, never followed. */
export async function chownIntoRange(dir: string, idmap: IdMap): Promise<void> {
  const walk = async (path: string, isDir: boolean): Promise<void> => {
    const st = await lstat(path);
    const uid = mapIntoRange(st.uid, idmap.uid);
    const gid = mapIntoRange(st.gid, idmap.gid);
    if (uid !== st.uid || gid !== st.gid) {
      await lchown(path, uid, gid);
      // chown clears set-id bits; the copy's mode is the image's
      if (!st.isSymbolicLink() && st.mode & 0o6000) await chmod(path, st.mode & 0o7777);
    }
    if (!isDir) return;
    const children: Dirent[] = await readdir(path, { withFileTypes: true });
    for (const c of children) await walk(join(path, c.name), c.isDirectory());
  };
  await walk(dir, true);
}
