/**
 * Hand edits already reported: one small file per domain changed in libvirt by hand, holding the
 * digest of the definition last logged as `domain.drifted`. Passes run every few minutes; the
 * event is logged once per change, not once per pass. Losing a file (a crash before the rename)
 * only means the same change is logged once more, so no fsync.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export class HandEdits {
  /** Domains with a file, read once per instance (one instance per pass). */
  private listing: Promise<Set<string>> | undefined;

  constructor(private readonly dir: string) {}

  private names(): Promise<Set<string>> {
    this.listing ??= readdir(this.dir).then(
      (names) => new Set(names.filter((n) => !n.startsWith('.'))),
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return new Set<string>();
        throw e;
      },
    );
    return this.listing;
  }

  /** The digest last logged for this domain's hand edit, if any. */
  async logged(domain: string): Promise<string | undefined> {
    if (!(await this.names()).has(domain)) return undefined;
    return readFile(join(this.dir, domain), 'utf8').then(
      (s) => s.trim(),
      () => undefined,
    );
  }

  async remember(domain: string, digest: string): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.${domain}.${process.pid}.tmp`);
    await writeFile(tmp, digest + '\n', { mode: 0o600 });
    await rename(tmp, join(this.dir, domain));
    (await this.names()).add(domain);
  }

  /** The domain is in step again (or redefined, or gone): a later hand edit is news. */
  async forget(domain: string): Promise<void> {
    const names = await this.names();
    if (!names.has(domain)) return;
    await rm(join(this.dir, domain), { force: true });
    names.delete(domain);
  }
}
