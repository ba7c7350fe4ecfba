/**
 * One image, many containers. Settings entries that name an image entry share one verified
 * unpack per image version, kept pristine under `<state>/images/<image's domain name>/<version>/`
 * and never run on; each container gets its own tree, `<state>/bundles/<domain>/<version>/`, made
 * by `containerTree` (a copy for now: the one function a copy-on-write store would replace).
 * Container trees sit where an image entry's own tree sits, so collection treats both alike.
 */
import { copyFile, readdir, rm, rmdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { errorMessage } from '../errors.js';
import {
  BundleBusyError,
  bundlePaths,
  checkReplaceable,
  commitStaging,
  createStaging,
  discardStaging,
  lockBundle,
  readRecord,
  RECORD_FILE,
  repairBundle,
} from '../image/bundle-dir.js';
import { BUNDLE_VERSION_NAME, unpackImage, type UnpackOptions, type UnpackResult } from '../image/unpack.js';
import type { EventLogger } from '../log.js';
import type { SpoolEntry } from '../spool/index.js';
import { copyTree } from '../fsroot/copy.js';
import { oneAtATime } from '../one-at-a-time.js';

export function sharedImagesDir(stateDir: string): string {
  return join(stateDir, 'images');
}

/**
 * The image entry unpacked (verified once per version: an unchanged version is not unpacked
 * again) into its shared, pristine tree.
 */
export function unpackShared(image: SpoolEntry, stateDir: string, opts: UnpackOptions): Promise<UnpackResult> {
  const dir = join(sharedImagesDir(stateDir), image.domainName);
  return oneAtATime(dir, () => unpackImage(image.path, dir, { ...opts, versioned: true }));
}

/**
 * A container's own bundle from a shared image tree: `<containerDir>/<version>/`, made once per
 * image version (an existing one is the container's, with its data, and is kept). Built in a
 * staging directory and swapped in whole, under the same lock as an unpack of that directory.
 */
export async function containerTree(image: UnpackResult, containerDir: string, opts: { signal?: AbortSignal | undefined; log?: EventLogger | undefined } = {}): Promise<string> {
  const paths = bundlePaths(join(containerDir, basename(image.bundleDir)));
  const unlock = await lockBundle(bundlePaths(containerDir));
  try {
    for (const m of await repairBundle(paths)) opts.log?.warn('image.repaired', { entry: image.source, bundle: paths.target, repair: m }, m);
    const record = await readRecord(paths.target);
    if (record?.manifestDigest === image.manifestDigest && (await isBundle(paths.target))) return paths.target;
    await checkReplaceable(paths);
    await createStaging(paths);
    try {
      await copyTree(join(image.bundleDir, 'rootfs'), join(paths.staging, 'rootfs'), opts.signal);
      for (const f of ['config.json', RECORD_FILE]) await copyFile(join(image.bundleDir, f), join(paths.staging, f));
      await commitStaging(paths);
    } catch (e) {
      await discardStaging(paths);
      throw e;
    }
    opts.log?.info('image.unpacked', { entry: image.source, digest: image.manifestDigest, bundle: paths.target, copiedFrom: image.bundleDir });
    return paths.target;
  } finally {
    await unlock();
  }
}

async function isBundle(dir: string): Promise<boolean> {
  try {
    return (await stat(join(dir, 'config.json'))).isFile() && (await stat(join(dir, 'rootfs'))).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Removes the shared image versions no container of this pass was made from (they are never run
 * on, so this only costs an unpack should one be needed again). A directory an unpack holds is
 * left for the next pass.
 */
export async function collectSharedImages(stateDir: string, inUse: ReadonlySet<string>, log: EventLogger): Promise<string[]> {
  const root = sharedImagesDir(stateDir);
  const images = await readdir(root).catch(() => [] as string[]);
  const collected: string[] = [];
  for (const image of images) {
    if (image.startsWith('.')) continue;
    const dir = join(root, image);
    let unlock: () => Promise<void>;
    try {
      unlock = await lockBundle(bundlePaths(dir));
    } catch (e) {
      if (e instanceof BundleBusyError) continue;
      throw e;
    }
    try {
      for (const version of await readdir(dir).catch(() => [] as string[])) {
        const path = join(dir, version);
        if (!BUNDLE_VERSION_NAME.test(version) || inUse.has(path)) continue;
        await removeVersion(path);
        collected.push(path);
        log.info('entry.removed', { image, version, reason: 'shared image version no longer used by a container; removed from the state directory' });
      }
      await rmdir(dir).catch(() => undefined); // only when empty
    } catch (e) {
      log.warn('image.warning', { image, reason: 'shared image not collected', err: errorMessage(e) });
    } finally {
      await unlock();
    }
  }
  return collected;
}

async function removeVersion(path: string): Promise<void> {
  const p = bundlePaths(path);
  await repairBundle(p);
  await rm(path, { recursive: true, force: true });
}
