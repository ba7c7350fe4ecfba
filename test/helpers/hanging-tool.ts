/**
 * A system tool (mknod, sync …) that hangs: a script of that name, first on PATH while `run`
 * runs, that marks its start and then sleeps for ever (exec: no child of its own keeps its pipes
 * open). `started` resolves when it has started, or with false when `work` ended first.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function withHangingTool<T>(tool: string, run: (started: (work: Promise<unknown>) => Promise<boolean>) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'ocivirt-hanging-'));
  const marker = join(dir, 'started');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', tool), `#!/bin/sh\necho > '${marker}'\nexec sleep 600\n`);
  chmodSync(join(dir, 'bin', tool), 0o755);
  const path = process.env.PATH;
  process.env.PATH = `${join(dir, 'bin')}:${path}`; // spawned tools and new workers take it
  const started = async (work: Promise<unknown>): Promise<boolean> => {
    let ended = false;
    void work.then(
      () => (ended = true),
      () => (ended = true),
    );
    while (!existsSync(marker) && !ended) await new Promise((r) => setTimeout(r, 20));
    return existsSync(marker);
  };
  try {
    return await run(started);
  } finally {
    process.env.PATH = path;
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What `p` resolves to, or 'still waiting after N s' once `ms` have passed. */
export async function within<T>(ms: number, p: Promise<T>): Promise<T | string> {
  let guard: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<string>((r) => (guard = setTimeout(() => r(`still waiting after ${ms / 1000} s`), ms)))]);
  } finally {
    clearTimeout(guard);
  }
}
