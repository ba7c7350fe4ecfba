/**
 * Gzip-compressed image archives (`docker save | gzip`, `web.tar.gz`, `web.tgz`): images are read
 * in place, which needs random access, so the archive is inflated once into a scratch directory
 * and read from there like any tar. With a cache directory (the daemon's `<state>/archives`) the
 * inflated copy is kept while the archive is unchanged (same inode, size and times), so passes over
 * an unchanged archive inflate nothing; without one it lives as long as the image source.
 *
 * The input is hostile: the copy is bounded by the inflation ratio (a gzip bomb is refused after
 * its first 64 MiB, as layers are) and stops before it would take the scratch filesystem's free
 * space below `minFreeBytes`. The digests of everything read from it are checked as usual.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, statfs, utimes, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../errors.js';
import { DEFAULT_LIMITS } from '../layer/index.js';
import { CorruptStreamError } from './codec-error.js';
import { gunzip } from './gzip.js';
import { DEFAULT_MAX_RATIO, RATIO_AFTER_BYTES } from './layer-stream.js';

const FREE_CHECK_EVERY = 16 * 1024 * 1024;

export interface InflateOptions {
  /** Keep inflated copies here, by the archive's identity; without it, a temporary directory. */
  cacheDir?: string | undefined;
  /** Refused once it inflates more than this many times its compressed size (0: no limit). */
  maxRatio?: number | undefined;
  /** Free bytes the scratch filesystem keeps (the layers' default reserve otherwise). */
  minFreeBytes?: number | undefined;
  signal?: AbortSignal | undefined;
  /** Bytes after the gzip stream (ignored, as gzip(1) does): told once the archive is inflated. */
  onTrailing?: ((bytes: number) => void) | undefined;
}

/** The scratch filesystem would go below its reserve: not the archive's fault, so not an InputError. */
class LowSpaceError extends Error {}

export interface Inflated {
  /** The inflated tar. */
  path: string;
  /** Removes what only this source needed (a temporary copy); a cached copy stays. */
  release(): Promise<void>;
}

/** The inflated copy of the gzip file open as `handle` (its fstat `st`; `file` names it in messages). */
export async function inflateArchive(handle: FileHandle, st: Stats, file: string, opts: InflateOptions = {}): Promise<Inflated> {
  if (opts.cacheDir === undefined) {
    const dir = await mkdtemp(join(tmpdir(), 'ocivirt-inflate-'));
    const path = join(dir, 'archive.tar');
    try {
      await inflateInto(handle, st, file, path, dir, opts);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return { path, release: () => rm(dir, { recursive: true, force: true }) };
  }
  await mkdir(opts.cacheDir, { recursive: true, mode: 0o700 });
  const key = createHash('sha256').update(`${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`).digest('hex').slice(0, 32);
  const path = join(opts.cacheDir, `${key}.tar`);
  const cached = await stat(path).catch(() => undefined);
  if (cached?.isFile()) {
    const now = new Date();
    await utimes(path, now, now); // used: kept by the next collection
    return { path, release: async () => {} };
  }
  const tmp = join(opts.cacheDir, `.${key}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await inflateInto(handle, st, file, tmp, opts.cacheDir, opts);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return { path, release: async () => {} };
}

async function inflateInto(handle: FileHandle, st: Stats, file: string, target: string, scratch: string, opts: InflateOptions): Promise<void> {
  const maxRatio = opts.maxRatio ?? DEFAULT_MAX_RATIO;
  const minFree = opts.minFreeBytes ?? DEFAULT_LIMITS.minFreeBytes;
  const out = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  let written = 0;
  let nextFreeCheck = 0;
  try {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        void (async () => {
          written += chunk.length;
          if (maxRatio > 0 && written > RATIO_AFTER_BYTES && written > maxRatio * Math.max(st.size, 1))
            throw new InputError(`inflates more than ${maxRatio} times its compressed size: refused as a gzip bomb (unpackLimits.maxRatio)`, { file });
          if (minFree > 0 && written >= nextFreeCheck) {
            nextFreeCheck = written + FREE_CHECK_EVERY;
            const fs = await statfs(scratch);
            if (fs.bavail * fs.bsize - chunk.length < minFree)
              throw new LowSpaceError(`${scratch}: inflating ${file} would leave less than ${minFree} bytes free (unpackLimits.minFreeBytes)`);
          }
          await out.write(chunk);
        })().then(() => done(), done);
      },
    });
    try {
      // gzip.ts, as for layers: concatenated members read to the end, trailing bytes ignored and told
      const inflate = gunzip((bytes) => opts.onTrailing?.(bytes));
      await pipeline(handle.createReadStream({ start: 0, autoClose: false }), inflate, sink, opts.signal ? { signal: opts.signal } : {});
    } catch (e) {
      // only a bad stream is the archive's fault; a write or read error of this host stays what it is
      const code = (e as NodeJS.ErrnoException).code;
      if (!(e instanceof CorruptStreamError || code?.startsWith('Z_')) || opts.signal?.aborted) throw e;
      throw new InputError(`is not a valid gzip file (${code ?? (e as Error).message})`, { file });
    }
    await out.sync();
  } finally {
    await out.close();
  }
}

/**
 * Removes the cached copies not used since `since` (ms): the archives they came from changed or
 * left the spool. Copies are touched at each use, so one in use by this pass is never removed.
 */
export async function collectInflated(cacheDir: string, since: number): Promise<string[]> {
  const names = await readdir(cacheDir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const p = join(cacheDir, name);
    const st = await stat(p).catch(() => undefined);
    if (st === undefined || !st.isFile() || st.mtimeMs >= since) continue;
    await rm(p, { force: true });
    removed.push(p);
  }
  return removed;
}
