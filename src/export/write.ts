/**
 * Writing an exported bundle's config.json: atomically (temporary file, fsync, rename, fsync of
 * the directory), owner-only (0700 directories, 0600 files: a config names host paths and
 * environment variables), and never through a symlink someone planted.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { canonicalJson } from '../convert/json.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';

/** A directory that exists as a real directory (created 0700 when missing). */
export async function ensureOwnDirectory(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  const st = await lstat(path);
  if (!st.isDirectory()) throw new Error(`${path}: is not a directory (a symlink or file is in the way)`);
}

/** The config.json now in `bundleDir`, canonical, or undefined when there is none or it is unreadable. */
export async function readExportedCanonical(bundleDir: string): Promise<string | undefined> {
  try {
    const fh = await open(join(bundleDir, 'config.json'), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) return undefined;
      return canonicalJson(JSON.parse(await readFile(fh, 'utf8')));
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/** Writes `<bundleDir>/config.json` (pretty JSON) atomically, owner-only; the directory is created 0700. */
export async function writeConfigAtomically(bundleDir: string, config: RuntimeConfig): Promise<string> {
  await ensureOwnDirectory(bundleDir);
  const target = join(bundleDir, 'config.json');
  await writeFileAtomically(target, JSON.stringify(config, null, 2) + '\n', 0o600);
  return target;
}

/** Where the exports of undefined domains go: out of the way of a spool, never pointing at a live rootfs. */
export const REMOVED_DIR = '.removed';

/**
 * Moves `<exportDir>/<name>` aside to `<exportDir>/.removed/<name>/` (replacing an older one there):
 * the domain is gone and its rootfs with it, so the export must not look like a bundle one can use.
 * Returns the new path, or undefined when there was nothing (a real directory) to move.
 */
export async function moveExportAside(exportDir: string, name: string): Promise<string | undefined> {
  const from = join(exportDir, name);
  const st = await lstat(from).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const removed = join(exportDir, REMOVED_DIR);
  await ensureOwnDirectory(removed);
  const to = join(removed, name);
  // the older one first out of the way, under a name of its own: a crash leaves both, never neither
  const old = join(removed, `.old-${name}-${process.pid}-${Date.now()}`);
  await rename(to, old).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
  await rename(from, to);
  await rm(old, { recursive: true, force: true });
  return to;
}

/** The exported bundles' names now in `exportDir` (dot entries, .removed among them, left out). */
export async function exportedNames(exportDir: string): Promise<string[]> {
  const entries = await readdir(exportDir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
}
