/**
 * A system tool (mknod, sync …) that hangs: a script of that name, first on PATH while the work
 * runs, that marks its start and then sleeps for ever (exec: no child of its own keeps its pipes
 * open). `abortWhileHanging` aborts the work once the tool has started, and says how it ended.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as assert from 'uvu/assert';

/** How long the work may take after the abort before the outcome says it is still waiting. */
const GUARD_MS = 30_000;

export async function abortWhileHanging(
  tool: string,
  work: (signal: AbortSignal) => Promise<unknown>,
  reason: Error,
): Promise<{ outcome: string; afterMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-hanging-'));
  const marker = join(dir, 'started');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', tool), `#!/bin/sh\necho > '${marker}'\nexec sleep 600\n`);
  chmodSync(join(dir, 'bin', tool), 0o755);
  const path = process.env.PATH;
  process.env.PATH = `${join(dir, 'bin')}:${path}`; // spawned tools and new workers take it
  let guard: NodeJS.Timeout | undefined;
  try {
    const ctl = new AbortController();
    let ended = false;
    const outcome = work(ctl.signal)
      .then(
        () => 'finished',
        (e: unknown) => String(e),
      )
      .finally(() => (ended = true));
    while (!existsSync(marker) && !ended) await new Promise((r) => setTimeout(r, 20));
    if (!existsSync(marker)) assert.unreachable(`the hanging ${tool} was not run: ${await outcome}`);
    const t0 = Date.now();
    ctl.abort(reason);
    const waited = new Promise<string>((r) => (guard = setTimeout(() => r(`still waiting after ${GUARD_MS / 1000} s`), GUARD_MS)));
    return { outcome: await Promise.race([outcome, waited]), afterMs: Date.now() - t0 };
  } finally {
    clearTimeout(guard);
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
}
