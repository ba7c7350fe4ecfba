/**
 * Collecting image bundles from the state directory (`<state>/bundles/<domain>/<version>/`),
 * never from the spool. libvirt-lxc bind-mounts a rootfs directory, so deleting a tree deletes
 * the files a running container sees: a version is removed only when no domain refers to it,
 * neither in its inactive definition nor in the live one of a running domain (an update under
 * `next-start` leaves the two apart until the next start). The newest version of a domain the
 * pass keeps is kept too: it was unpacked for the spool as it is now, and may not be defined yet.
 */
import { randomBytes } from 'node:crypto';
import { lstat, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';
import { BundleBusyError, bundlePaths, lockBundle, readRecord, repairBundle } from '../image/bundle-dir.js';
import { BUNDLE_VERSION_NAME } from '../image/unpack.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import type { EventLogger } from '../log.js';
import { escapeAttr } from '../xml/escape.js';
import type { ItemResult } from './apply.js';
import { imageBundlesDir } from './desired.js';

export interface BundleVersion {
  name: string;
  /** When it was unpacked (ms since the epoch; 0 when its record is unreadable). */
  unpackedAt: number;
}

export interface DomainBundles {
  domain: string;
  versions: BundleVersion[];
}

export interface CollectionInput {
  bundlesDir: string;
  trees: readonly DomainBundles[];
  /** Domains this pass keeps (desired, failed, or left by a remove policy `keep`). */
  inUse: ReadonlySet<string>;
  /** Every domain's definitions as libvirt gives them: inactive and live XML. */
  definitions: readonly string[];
}

export interface CollectionDecision {
  /** Whole `<bundles>/<domain>` directories. */
  domains: string[];
  versions: { domain: string; version: string }[];
}

/** Does the XML name this host path (itself or something under it)? Textual, so it errs on keeping. */
export function refersTo(xml: string, path: string): boolean {
  for (const needle of new Set([path, escapeAttr(path)])) {
    for (let at = xml.indexOf(needle); at !== -1; at = xml.indexOf(needle, at + 1)) {
      const next = xml[at + needle.length];
      if (next === undefined || next === '/' || next === "'" || next === '"' || next === '<') return true;
    }
  }
  return false;
}

/** What may go: a pure function of the trees on disk, the pass's domains and libvirt's definitions. */
export function decideCollection(input: CollectionInput): CollectionDecision {
  const used = (path: string) => input.definitions.some((xml) => refersTo(xml, path));
  const decision: CollectionDecision = { domains: [], versions: [] };
  for (const tree of input.trees) {
    const keptByPass = input.inUse.has(tree.domain);
    if (!keptByPass && !used(join(input.bundlesDir, tree.domain))) {
      decision.domains.push(tree.domain);
      continue;
    }
    const newest = keptByPass ? newestOf(tree.versions) : undefined;
    for (const v of tree.versions) {
      if (v.name === newest || used(join(input.bundlesDir, tree.domain, v.name))) continue;
      decision.versions.push({ domain: tree.domain, version: v.name });
    }
  }
  return decision;
}

function newestOf(versions: readonly BundleVersion[]): string | undefined {
  let best: BundleVersion | undefined;
  for (const v of versions) if (best === undefined || v.unpackedAt > best.unpackedAt || (v.unpackedAt === best.unpackedAt && v.name > best.name)) best = v;
  return best?.name;
}

async function isDirectory(path: string): Promise<boolean> {
  return lstat(path).then(
    (st) => st.isDirectory(),
    (e: unknown) => {
      if (isGone(e)) return false;
      throw e;
    },
  );
}

/** ENOENT / ENOTDIR: it is not there. Every other error is a failure to report, never "nothing". */
function isGone(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * The domain directories and their versions; leftovers of interrupted removals are finished.
 * `untidy`: domains with a lock file or dot entries inside, which a crash may have left.
 */
async function readTrees(dir: string): Promise<{ trees: DomainBundles[]; untidy: string[] }> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { trees: [], untidy: [] }; // no image unpacked yet
    throw e;
  }
  const trees: DomainBundles[] = [];
  const untidy: string[] = [];
  for (const name of names) {
    if (name.startsWith('.trash-')) {
      await rm(join(dir, name), { recursive: true, force: true });
      continue;
    }
    const lock = /^\.(.+)\.ocivirt-lock$/.exec(name);
    if (lock) untidy.push(lock[1]!);
    // staging, old copies and locks of unversioned bundles belong to unpackImage
    if (name.startsWith('.') || !(await isDirectory(join(dir, name)))) continue;
    const versions: BundleVersion[] = [];
    for (const child of await readdir(join(dir, name))) {
      if (child.startsWith('.')) untidy.push(name);
      if (!BUNDLE_VERSION_NAME.test(child) || !(await isDirectory(join(dir, name, child)))) continue;
      const at = Date.parse((await readRecord(join(dir, name, child)))?.unpackedAt ?? '');
      versions.push({ name: child, unpackedAt: Number.isFinite(at) ? at : 0 });
    }
    trees.push({ domain: name, versions });
  }
  return { trees, untidy: [...new Set(untidy)] };
}

const READ_CONCURRENCY = 8;

/** Every domain's inactive and live XML (a domain gone meanwhile has none). */
async function allDefinitions(port: LibvirtPort): Promise<string[]> {
  const reads = (await port.listDomains()).flatMap((ref) => [() => port.inactiveXml(ref.name), () => port.liveXml(ref.name)]);
  const out: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(READ_CONCURRENCY, reads.length) }, async () => {
      while (next < reads.length) {
        const read = reads[next++]!;
        try {
          out.push(await read());
        } catch (e) {
          if (!(e instanceof DomainNotFoundError)) throw e;
        }
      }
    }),
  );
  return out;
}

/** Renames first, so a crash mid-way leaves a `.trash-*` the next pass finishes, never half a tree under a live name. */
async function removeTree(parent: string, name: string): Promise<void> {
  const trash = join(parent, `.trash-${name}-${randomBytes(4).toString('hex')}`);
  await rename(join(parent, name), trash);
  await rm(trash, { recursive: true, force: true });
}

/**
 * Removes the image bundles and versions no domain uses. libvirt is read only when something on
 * disk could go; when it cannot be read, nothing is removed this pass.
 */
export async function collectImageBundles(port: LibvirtPort, stateDir: string, results: readonly ItemResult[], log: EventLogger): Promise<string[]> {
  try {
    return await collect(port, stateDir, results, log);
  } catch (e) {
    // the state directory cannot be read as it should: nothing is removed this pass, and it says why
    log.warn('image.warning', { reason: 'image bundles not collected: the state directory cannot be read', err: errorMessage(e) });
    return [];
  }
}

async function collect(port: LibvirtPort, stateDir: string, results: readonly ItemResult[], log: EventLogger): Promise<string[]> {
  const dir = imageBundlesDir(stateDir);
  const { trees, untidy } = await readTrees(dir);
  const inUse = new Set(results.filter((r) => !(r.item.action === 'delete' && r.ok)).map((r) => r.item.domain));
  for (const domain of untidy) await withDomainLock(dir, domain, () => tidyDomain(join(dir, domain)));
  const upperBound = decideCollection({ bundlesDir: dir, trees, inUse, definitions: [] });
  if (upperBound.domains.length === 0 && upperBound.versions.length === 0) return [];
  let definitions: string[];
  try {
    definitions = await allDefinitions(port);
  } catch (e) {
    log.warn('image.warning', { reason: 'image bundles not collected: libvirt definitions unreadable', err: errorMessage(e) });
    return [];
  }
  const decision = decideCollection({ bundlesDir: dir, trees, inUse, definitions });
  const collected: string[] = [];
  for (const domain of decision.domains) {
    if (!(await withDomainLock(dir, domain, () => removeTree(dir, domain)))) continue;
    collected.push(domain);
    log.info('entry.removed', { domain, reason: 'image bundle no longer used; removed from the state directory' });
  }
  for (const { domain, version } of decision.versions) {
    if (!(await withDomainLock(dir, domain, () => removeTree(join(dir, domain), version)))) continue;
    collected.push(join(domain, version));
    log.info('entry.removed', { domain, version, reason: 'image version no longer used by any definition; removed from the state directory' });
  }
  return collected;
}

/** Runs `work` under the domain's unpack lock; false when an unpack holds it (the next pass will see). */
async function withDomainLock(dir: string, domain: string, work: () => Promise<void>): Promise<boolean> {
  let unlock: () => Promise<void>;
  try {
    unlock = await lockBundle(bundlePaths(join(dir, domain)));
  } catch (e) {
    if (e instanceof BundleBusyError) return false;
    throw e;
  }
  try {
    await work();
    return true;
  } finally {
    await unlock();
  }
}

/**
 * With the lock held (a stale one taken over) nothing is unpacking: dot entries in a domain
 * directory are leftovers of a crash.
 */
async function tidyDomain(domainDir: string): Promise<void> {
  const names = await readdir(domainDir).catch((e: unknown) => {
    if (isGone(e)) return [] as string[];
    throw e;
  });
  for (const name of names) {
    if (name.startsWith('.trash-')) await rm(join(domainDir, name), { recursive: true, force: true });
    const m = /^\.(.+)\.ocivirt-(staging|old)$/.exec(name);
    if (m && BUNDLE_VERSION_NAME.test(m[1]!)) await repairBundle(bundlePaths(join(domainDir, m[1]!)));
  }
}
