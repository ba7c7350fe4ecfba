/**
 * Writing a bundle directory so that it is either the old one or the new one, never half of
 * either: everything is built in a staging directory beside the target, then swapped in by
 * renames. Fixed names for the staging and the old copy let the next run repair what a crash
 * left behind (the swap is two renames; between them only the old copy holds the bundle).
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.js';

/** Kept beside config.json: what was unpacked, so an unchanged image is not unpacked again. */
export const RECORD_FILE = '.ocivirt-image.json';

export interface UnpackRecord {
  tool: 'ocivirt';
  manifestDigest: string;
  configDigest: string;
  platform: string;
  /** Options that change the tree (e.g. device nodes allowed): a change means a new unpack. */
  optionsKey: string;
  source: string;
  refs: string[];
  unpackedAt: string;
}

export interface BundlePaths {
  target: string;
  staging: string;
  old: string;
  /** Held while a run works on the target, so a second run cannot take its staging for a leftover. */
  lock: string;
}

export function bundlePaths(bundleDir: string): BundlePaths {
  const target = resolve(bundleDir);
  const parent = dirname(target);
  const base = basename(target);
  if (base === '' || target === '/') throw new InputError('the bundle directory cannot be /', { file: bundleDir });
  return {
    target,
    staging: join(parent, `.${base}.ocivirt-staging`),
    old: join(parent, `.${base}.ocivirt-old`),
    lock: join(parent, `.${base}.ocivirt-lock`),
  };
}

/** Locks taken by this process (a daemon may unpack several bundles at once). */
const heldHere = new Set<string>();

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Another live run holds the bundle's lock: busy, try later (any other lock error is not this). */
export class BundleBusyError extends Error {
  override name = 'BundleBusyError';
}

/**
 * Takes the target's lock file (O_EXCL, holding our pid). A lock whose process is gone is stale
 * (a crash) and is taken over; a live one means another run is busy with this target.
 */
export async function lockBundle(p: BundlePaths): Promise<() => Promise<void>> {
  await mkdir(dirname(p.target), { recursive: true });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(p.lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        await fh.writeFile(`${process.pid}\n`);
      } finally {
        await fh.close();
      }
      heldHere.add(p.lock);
      return async () => {
        heldHere.delete(p.lock);
        await rm(p.lock, { force: true });
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = Number((await readFile(p.lock, 'utf8').catch(() => '')).trim());
    const busy = pid === process.pid ? heldHere.has(p.lock) : Number.isSafeInteger(pid) && pid > 0 && processAlive(pid);
    if (busy) throw new BundleBusyError(`${p.target}: another unpack (process ${pid}) is working on this bundle; lock ${p.lock}`);
    await rm(p.lock, { force: true }); // stale: its process is gone
  }
  throw new Error(`${p.target}: cannot take the lock ${p.lock}`);
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function fsyncDir(p: string): Promise<void> {
  const fh = await open(p, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Undoes what an interrupted run left: an old copy without a target is put back (the crash fell
 * between the two renames); an old copy beside a target is the replaced bundle; a staging
 * directory is unfinished work. Returns what it did, for the log.
 */
export async function repairBundle(p: BundlePaths): Promise<string[]> {
  const done: string[] = [];
  if (await exists(p.old)) {
    if (await exists(p.target)) {
      await rm(p.old, { recursive: true, force: true });
      done.push(`removed the replaced bundle ${p.old}`);
    } else {
      await rename(p.old, p.target);
      done.push(`restored ${p.target} from ${p.old}`);
    }
  }
  if (await exists(p.staging)) {
    await rm(p.staging, { recursive: true, force: true });
    done.push(`removed unfinished staging ${p.staging}`);
  }
  return done;
}

export async function readRecord(target: string): Promise<UnpackRecord | undefined> {
  try {
    const fh = await open(join(target, RECORD_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > 1 << 20) return undefined;
      const v = JSON.parse((await fh.readFile()).toString('utf8')) as UnpackRecord;
      return v?.tool === 'ocivirt' && typeof v.manifestDigest === 'string' ? v : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/** The target may be replaced only if it is absent, empty, or a bundle we made. */
export async function checkReplaceable(p: BundlePaths): Promise<void> {
  let st;
  try {
    st = await lstat(p.target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isDirectory()) throw new InputError('exists and is not a directory', { file: p.target });
  if ((await readdir(p.target)).length === 0) return;
  if ((await readRecord(p.target)) === undefined)
    throw new InputError(`exists and was not made by 'ocivirt unpack' (no ${RECORD_FILE}); remove it or choose another directory`, { file: p.target });
}

/** A fresh staging directory, private to root while it fills (setuid files inside are not yet anyone's business). */
export async function createStaging(p: BundlePaths): Promise<void> {
  await mkdir(dirname(p.target), { recursive: true });
  await mkdir(p.staging, { mode: 0o700 });
}

/** Swaps the finished staging directory in; the old bundle, if any, is removed afterwards. */
export async function commitStaging(p: BundlePaths): Promise<void> {
  await fsyncDir(p.staging);
  const hadTarget = await exists(p.target);
  if (hadTarget) await rename(p.target, p.old);
  await rename(p.staging, p.target);
  await fsyncDir(dirname(p.target));
  if (hadTarget) await rm(p.old, { recursive: true, force: true });
}

export async function discardStaging(p: BundlePaths): Promise<void> {
  await rm(p.staging, { recursive: true, force: true });
}
