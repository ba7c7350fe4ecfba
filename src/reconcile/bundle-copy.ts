/**
 * A spool bundle's rootfs runs from a copy in the state directory, never from the spool.
 *
 * libvirt-lxc resolves a domain's root directory again at every start and the container writes
 * into it. Named by its spool path, a bundle's rootfs would be written by the container (the
 * spool is user input, never ocivirt's to change), and a spool writer who later swapped a path
 * component for a symlink would have libvirt mount whatever it points to at the next start.
 *
 * So each version of the rootfs is copied once into `<state>/bundles/<domain>/<version>/rootfs`,
 * where image entries' trees already live (collection, repair and locking treat both alike).
 * The version is the identity of the rootfs directory, the same one the spool watcher keys the
 * entry on: a rootfs replaced in the spool (renamed in, re-created, its top directory changed)
 * is a new version, copied anew, and the domain is redefined onto it; files changed deep inside
 * the same rootfs directory are not (they would not change the entry either). An unchanged
 * version is the container's own tree, with its data, and is reused.
 */
import { createHash } from 'node:crypto';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { InputError } from '../errors.js';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { copyTree } from '../fsroot/copy.js';
import { BundleBusyError, bundlePaths, checkReplaceable, commitStaging, createStaging, discardStaging, lockBundle, readRecord, RECORD_FILE, repairBundle, type BundlePaths, type UnpackRecord } from '../image/bundle-dir.js';
import type { EventLogger } from '../log.js';

/** What the record of a copied rootfs says in place of an image's digests. */
export const BUNDLE_COPY_OPTIONS = 'spool-bundle-rootfs';

/** How often a copy waits on a domain directory another pass's copy still holds (the step's deadline bounds it). */
const LOCK_POLL_MS = 50;

export interface RootfsCopyOptions {
  /** `<state>/bundles/<domain>`: one directory per version below it. */
  domainDir: string;
  /** The spool entry, for the record and events. */
  entry: string;
  signal?: AbortSignal | undefined;
  log?: EventLogger | undefined;
}

/**
 * The copy of the rootfs at `rootfsAt` (checked by the trust rules, reached through the held
 * bundle: `/proc/self/fd/N/...`), made now unless this version was copied before.
 */
export async function copiedRootfs(rootfsAt: string, opts: RootfsCopyOptions): Promise<string> {
  const st = await lstat(rootfsAt);
  if (!st.isDirectory()) throw new InputError('the rootfs is no longer a directory', { file: opts.entry, field: 'root.path' });
  const version = createHash('sha256').update(`${st.dev}:${st.ino}:${st.mtimeMs}:${st.ctimeMs}`).digest('hex').slice(0, 16);
  const paths = bundlePaths(join(opts.domainDir, version));
  const rootfs = join(paths.target, 'rootfs');
  const unlock = await lockWhenFree(bundlePaths(opts.domainDir), opts.signal);
  try {
    for (const m of await repairBundle(paths)) opts.log?.warn('image.repaired', { entry: opts.entry, bundle: paths.target, repair: m }, m);
    if ((await readRecord(paths.target))?.optionsKey === BUNDLE_COPY_OPTIONS && (await isDirectory(rootfs))) return rootfs;
    await checkReplaceable(paths);
    await createStaging(paths);
    try {
      // cp runs in a process of its own: the held directory is reached through our pid, not its `self`
      await copyTree(rootfsAt.replace(/^\/proc\/self\//, `/proc/${process.pid}/`), join(paths.staging, 'rootfs'), opts.signal);
      // cp -a copies a top-level symlink as a link: a rootfs swapped for one after the check is refused here
      if (!(await isDirectory(join(paths.staging, 'rootfs')))) throw new InputError('the rootfs was replaced by something other than a directory while it was copied', { file: opts.entry, field: 'root.path' });
      await writeFileAtomically(join(paths.staging, RECORD_FILE), recordText(opts.entry), 0o600);
      await commitStaging(paths, opts.signal);
    } catch (e) {
      await discardStaging(paths);
      throw e;
    }
    opts.log?.info('bundle.copied', { entry: opts.entry, bundle: paths.target });
    return rootfs;
  } finally {
    await unlock();
  }
}

/** The domain's lock, once a copy or collection of an earlier pass lets go of it. */
async function lockWhenFree(p: BundlePaths, signal: AbortSignal | undefined): Promise<() => Promise<void>> {
  for (;;) {
    try {
      return await lockBundle(p);
    } catch (e) {
      if (!(e instanceof BundleBusyError)) throw e;
      signal?.throwIfAborted();
      await delay(LOCK_POLL_MS, undefined, signal ? { signal } : {});
    }
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() === true;
}

function recordText(entry: string): string {
  const rec: UnpackRecord = {
    tool: 'ocivirt',
    manifestDigest: '',
    configDigest: '',
    platform: '',
    optionsKey: BUNDLE_COPY_OPTIONS,
    source: entry,
    refs: [],
    unpackedAt: new Date().toISOString(),
  };
  return JSON.stringify(rec, null, 2) + '\n';
}
