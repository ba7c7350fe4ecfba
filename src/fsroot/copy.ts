/** A whole tree copied as it is (container trees from an image, volume seeds, self-contained exports). */
import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DEFAULT_LIMITS } from '../layer/index.js';

/** How often a copy looks at the free space it leaves. */
const COPY_FREE_CHECK_MS = 250;

/**
 * cp(1) keeps owners, modes, times, hard links, xattrs and special files as they are; Node's cp
 * does not all of that. A copy is of hostile content (an image, a volume seed), so it is stopped
 * once the target's filesystem would keep less than `minFreeBytes` free, as an unpack is.
 */
export async function copyTree(from: string, to: string, signal?: AbortSignal, minFreeBytes = DEFAULT_LIMITS.minFreeBytes): Promise<void> {
  const scratch = dirname(to);
  const lowOnSpace = async () => {
    const fs = await statfs(scratch);
    return fs.bavail * fs.bsize < minFreeBytes ? new Error(`${scratch}: copying ${from} would leave less than ${minFreeBytes} bytes free (unpackLimits.minFreeBytes)`) : undefined;
  };
  const before = await lowOnSpace();
  if (before) throw before;
  return new Promise((resolve, reject) => {
    const child = spawn('cp', ['-a', '--reflink=auto', '--', from, to], { stdio: ['ignore', 'ignore', 'pipe'], ...(signal ? { signal } : {}) });
    let err = '';
    let lowSpace: Error | undefined;
    const watch = setInterval(() => {
      void lowOnSpace().then((e) => {
        if (e === undefined || lowSpace) return;
        lowSpace = e;
        child.kill('SIGKILL');
      }, () => undefined);
    }, COPY_FREE_CHECK_MS);
    child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-2000)));
    child.on('error', (e) => (clearInterval(watch), reject(signal?.aborted ? signal.reason : new Error(`copying ${from}: ${e.message}`))));
    child.on('close', (code) => {
      clearInterval(watch);
      if (lowSpace) reject(lowSpace);
      else if (code === 0) resolve();
      else reject(new Error(`copying ${from} to ${to}: cp failed (${code}): ${err.trim()}`));
    });
  });
}
