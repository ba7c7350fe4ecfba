/**
 * Pending starts: a marker file per domain that is being created to be started, written before
 * the define and removed once the start is confirmed. A pass killed in between leaves the marker,
 * and the next pass starts the domain instead of seeing "unchanged" forever. libvirt itself
 * cannot tell "never started" from "stopped by an operator"; this file can.
 */
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

export class PendingStarts {
  constructor(private readonly dir: string) {}

  async list(): Promise<Set<string>> {
    try {
      return new Set((await readdir(this.dir)).filter((n) => !n.startsWith('.')));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw e;
    }
  }

  /** Durable before it returns: the marker must exist before libvirt knows the domain. */
  async add(domain: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const fh = await open(join(this.dir, domain), 'w', 0o600);
    await fh.sync().finally(() => fh.close());
    const d = await open(this.dir, 'r');
    await d.sync().finally(() => d.close());
  }

  async remove(domain: string): Promise<void> {
    await rm(join(this.dir, domain), { force: true });
  }
}
