/**
 * A child process for test/image/lock.test.ts: reads commands on stdin, one a line:
 *   `take <bundleDir>`  -> lockBundle, answers `won` or `lost <message>` (the lock is kept if won)
 *   `release`           -> unlocks what it holds, answers `released`
 */
import { createInterface } from 'node:readline';
import { bundlePaths, lockBundle } from '../../src/image/bundle-dir.js';

let unlock: (() => Promise<void>) | undefined;
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'take') {
    try {
      unlock = await lockBundle(bundlePaths(arg!));
      process.stdout.write('won\n');
    } catch (e) {
      process.stdout.write(`lost ${(e as Error).message.replace(/\n/g, ' ')}\n`);
    }
  } else if (cmd === 'release') {
    await unlock?.();
    unlock = undefined;
    process.stdout.write('released\n');
  }
}
