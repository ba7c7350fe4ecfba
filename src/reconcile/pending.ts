/**
 * Markers: an empty file per domain in a directory of the state dir, durable once added.
 *
 * Pending starts: a marker file per domain that is being created to be started, written before
 * the define and removed once the start is confirmed. A pass killed in between leaves the marker,
 * and the next pass starts the domain instead of seeing "unchanged" forever. libvirt itself
 * cannot tell "never started" from "stopped by an operator"; this file can.
 */
import { access, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../fsroot/atomic.js';

export class Markers {
  constructor(private readonly dir: string) {}

  async has(domain: string): Promise<boolean> {
    return access(join(this.dir, domain)).then(
      () => true,
      () => false,
    );
  }

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

  /** Exactly `keys` pending (none: removes the record). */
  async replace(domain: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return this.remove(domain);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomically(join(this.dir, domain), JSON.stringify([...new Set(keys)]) + '\n', 0o600);
  }

  async remove(domain: string): Promise<void> {
    await rm(join(this.dir, domain), { force: true });
  }
}

/** The pending starts are markers (one empty file per domain). */
export const PendingStarts = Markers;
export type PendingStarts = Markers;

/**
 * Pending changes: per running domain, the parts of its new definition that wait for its next
 * start (`<state>/pending-change/<domain>`, a JSON list of the compared keys). Written when an
 * update leaves some, removed when the domain starts (by ocivirt or anyone: the daemon hears the
 * start) or is undefined; `status` shows them.
 */
export class PendingChanges {
  /** One file per domain, as the pending starts: listed and removed alike. */
  private readonly files: PendingStarts;
  constructor(private readonly root: string) {
    this.files = new PendingStarts(root);
  }

  /** Every domain with a change pending, and its keys. */
  async all(): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    for (const name of await this.files.list()) {
      const keys = await this.get(name);
      if (keys.length) out.set(name, keys);
    }
    return out;
  }

  /** The keys pending for `domain` (none when nothing is). */
  async get(domain: string): Promise<string[]> {
    try {
      const keys: unknown = JSON.parse(await readFile(join(this.root, domain), 'utf8'));
      return Array.isArray(keys) ? keys.map(String) : [];
    } catch {
      return []; // none, gone meanwhile (the domain started), or unreadable: nothing to show
    }
  }

  /**
   * Adds `keys` to what is pending: an earlier change that still waits for the start stays
   * pending whatever the later ones were (the running domain has neither).
   */
  async add(domain: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    await this.replace(domain, [...(await this.get(domain)), ...keys]);
  }

  /** Exactly `keys` pending (none: removes the record). */
  async replace(domain: string, keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return this.remove(domain);
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await writeFileAtomically(join(this.root, domain), JSON.stringify([...new Set(keys)]) + '\n', 0o600);
  }

  remove(domain: string): Promise<void> {
    return this.files.remove(domain);
  }
}
