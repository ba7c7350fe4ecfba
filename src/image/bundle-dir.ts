/**
 * Writing a bundle directory so that it is either the old one or the new one, never half of
 * either: everything is built in a staging directory beside the target, then swapped in by
 * renames. Fixed names for the staging and the old copy let the next run repair what a crash
 * left behind (the swap is two renames; between them only the old copy holds the bundle).
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { InputError } from '../errors.js';
import { syncDirectory } from '../fsroot/atomic.js';

/** Kept beside config.json: what was unpacked, so an unchanged image is not unpacked again. */
export const RECORD_FILE = '.ocivirt-image.json';

export interface UnpackRecord {
  tool: 'ocivirt';
  manifestDigest: string;
  configDigest: string;
  platform: string;
  /** Options that change the tree (e.g. device nodes allowed): a change means a new unpack. */
  optionsKey: string;
  /**
   * The image-config converter that made config.json (IMAGE_CONVERTER_VERSION); records written
   * before it was recorded have none. Another version's config is derived again, not reused.
   */
  converter?: number;
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

/** Another live run holds the bundle's lock: busy, try later (any other lock error is not this). */
export class BundleBusyError extends Error {
  override name = 'BundleBusyError';
}

/**
 * Takes the target's lock: flock(2) on `.X.ocivirt-lock`, held by our open file description until
 * unlock or exit. The kernel drops it when its holder dies, so there is no stale lock to judge
 * by a pid that may have been reused, and nothing to take over: two runs can never both remove
 * a lock and both think they hold it. Node has no flock; flock(1) (util-linux, essential on
 * Debian) locks the descriptor it inherits from us, which shares our open file description, and
 * exits, leaving the lock with us. A second lock of the same target in this process is refused
 * the same way (another open file description). The file is removed on unlock; a run that opened
 * it just before locks the inode no longer at the path, sees that, and tries again.
 */
export async function lockBundle(p: BundlePaths): Promise<() => Promise<void>> {
  await mkdir(dirname(p.target), { recursive: true });
  for (let attempt = 0; attempt < 5; attempt++) {
    const fh = await open(p.lock, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
    let held = false;
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error(`${p.lock}: the lock is not a regular file`);
      if (!(await flockExclusive(fh.fd, p.lock))) {
        const holder = (await fh.readFile('utf8')).trim();
        throw new BundleBusyError(`${p.target}: another unpack (process ${/^\d+$/.test(holder) ? holder : 'unknown'}) is working on this bundle; lock ${p.lock}`);
      }
      const atPath = await lstat(p.lock).catch(() => undefined);
      if (atPath?.ino !== st.ino || atPath.dev !== st.dev) continue; // removed by its last holder meanwhile
      await fh.truncate(0);
      await fh.write(`${process.pid}\n`, 0);
      held = true;
      return async () => {
        const now = await lstat(p.lock).catch(() => undefined);
        if (now?.ino === st.ino && now.dev === st.dev) await rm(p.lock, { force: true });
        await fh.close(); // releases the lock
      };
    } finally {
      if (!held) await fh.close();
    }
  }
  throw new Error(`${p.target}: cannot take the lock ${p.lock}`);
}

/** Exit status flock(1) gives when the lock is held elsewhere (-E); anything else is a failure. */
const FLOCK_BUSY = 75;

/** flock(LOCK_EX | LOCK_NB) on our descriptor `fd`, through flock(1): true if taken, false if held elsewhere. */
async function flockExclusive(fd: number, file: string): Promise<boolean> {
  const args = ['--exclusive', '--nonblock', '--conflict-exit-code', String(FLOCK_BUSY), '3'];
  return (await runTool('flock', args, `${file}: taking the lock`, [0, FLOCK_BUSY], fd)) === 0;
}

/**
 * Runs a small system tool (util-linux, coreutils) that does one syscall Node lacks; `fd`, if
 * given, is its descriptor 3. Resolves with its exit status when that is one of `ok`; `signal`
 * kills it and rejects at once with the signal's reason.
 */
function runTool(tool: string, args: string[], what: string, ok: number[], fd?: number, signal?: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { stdio: ['ignore', 'ignore', 'pipe', ...(fd === undefined ? [] : [fd])], ...(signal ? { signal, killSignal: 'SIGKILL' } : {}) });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => reject(signal?.aborted ? (signal.reason as Error) : new Error(`${what}: cannot run ${tool}: ${e.message}`)));
    child.on('close', (c) => (c !== null && ok.includes(c) ? resolve(c) : reject(new Error(`${what}: ${tool} failed (${c}): ${err.trim()}`))));
  });
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

/**
 * Swaps the finished staging directory in; the old bundle, if any, is removed afterwards. Every
 * file and directory in the staging tree reaches the disk before the rename that makes its
 * record (and so the next pass's skip) visible: a crash never leaves a recorded bundle with
 * empty or missing files. Aborted (`signal`) up to the renames, it rejects and swaps nothing.
 */
export async function commitStaging(p: BundlePaths, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  // syncfs(2) of the staging tree's file system, through sync(1) (coreutils; Node has no syncfs).
  // An fsync of every file by fd was measured at 1.5-2x the whole unpack (a journal commit each).
  // It can take long on a busy disk: the step's abort kills it.
  await runTool('sync', ['--file-system', p.staging], `${p.staging}: flushing the unpacked tree`, [0], undefined, signal);
  signal?.throwIfAborted();
  const hadTarget = await exists(p.target);
  if (hadTarget) await rename(p.target, p.old);
  await rename(p.staging, p.target);
  await syncDirectory(dirname(p.target));
  if (hadTarget) await rm(p.old, { recursive: true, force: true });
}

export async function discardStaging(p: BundlePaths): Promise<void> {
  await rm(p.staging, { recursive: true, force: true });
}
