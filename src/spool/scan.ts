/**
 * What the spool holds: each top-level item is an entry, a bundle directory (config.json), an
 * image-layout directory (oci-layout), an image archive file (`.tar`, `.tar.gz`/`.tgz`, `.oci`,
 * `.oci.tar`: what it is, its content decides), or a settings file `NAME.ocivirt.json`. A settings
 * file belongs to the entry of its stem (`web-1/` or `web-1.tar` + `web-1.ocivirt.json`), or, when
 * no item has that stem, is an entry itself: a container of the image it names. Names starting
 * with '.' are ignored (editors and `rsync` stage files that way); everything else, symlinks
 * included, is refused with a reason. Each entry gets its domain name and a fingerprint that
 * changes when the entry (its settings file included) does, so the daemon can skip unchanged
 * entries cheaply.
 *
 * The spool is only read: no file in it is created, changed or locked here.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { errorMessage, InputError } from '../errors.js';
import { checkNamePrefix, domainNameFor, entryStem, IMAGE_SUFFIXES, isSettingsName } from './names.js';
import { readSmallRegularFile, UnreadableFile, withSpoolEntry } from './read.js';

export type SpoolEntryKind = 'bundle' | 'layout' | 'archive' | 'settings';

/** A settings file beside its entry. */
export interface SettingsFile {
  name: string;
  path: string;
}

export interface SpoolEntry {
  /** The item's name in the spool (`web-1`, `web-1.tar`, `web-1.ocivirt.json`). */
  name: string;
  /** The item itself (for a `settings` entry: the settings file). */
  path: string;
  kind: SpoolEntryKind;
  domainName: string;
  /**
   * Changes when the entry's definition does: a bundle's config.json content or its rootfs
   * directory replaced, a layout's index.json, an archive file rewritten or replaced, its
   * settings file rewritten, added or removed. Files changed deep inside the same rootfs do not
   * change it (a full resync still sees them).
   */
  fingerprint: string;
  /** Its settings file, when one is beside it (a `settings` entry is its own). */
  settings?: SettingsFile;
}

export interface RefusedEntry {
  name: string;
  path: string;
  reason: string;
  /** Set when the entry was recognised but refused (for example for a name collision). */
  kind?: SpoolEntryKind;
  domainName?: string;
}

export interface ScanOptions {
  /** Prepended to every domain name (a-z, 0-9, '-'). */
  prefix?: string;
}

/** Entries examined at once: enough to hide disk latency, few enough to keep file handles low. */
const CONCURRENCY = 32;

type Classified = { kind: SpoolEntryKind; fingerprint: string } | { reason: string };

export async function scanSpool(dir: string, opts: ScanOptions = {}): Promise<{ entries: SpoolEntry[]; refused: RefusedEntry[] }> {
  const prefix = opts.prefix ?? '';
  checkNamePrefix(prefix);
  let listing: string[];
  try {
    listing = await readdir(dir);
  } catch (e) {
    throw new InputError(`cannot read the spool directory (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: dir });
  }
  const names = listing.filter((n) => !n.startsWith('.')).sort();

  const inspected = new Array<SpoolEntry | RefusedEntry>(names.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, names.length) }, async () => {
      while (next < names.length) {
        const i = next++;
        inspected[i] = await inspect(dir, names[i]!, prefix);
      }
    }),
  );
  return settle(inspected);
}

/** Settings files paired with their entries, then collisions refused: what a scan reports. */
export function settle(items: readonly (SpoolEntry | RefusedEntry)[]): { entries: SpoolEntry[]; refused: RefusedEntry[] } {
  const paired = pairSettings(items);
  const refused = paired.filter((x): x is RefusedEntry => 'reason' in x);
  const resolved = refuseCollisions(paired.filter((x): x is SpoolEntry => !('reason' in x)));
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return { entries: resolved.entries.sort(byName), refused: [...refused, ...resolved.refused].sort(byName) };
}

/**
 * A settings file with an item of its stem belongs to that item (entries and refused items alike:
 * a refused bundle does not turn its settings into an entry of their own); one without stays an
 * entry (kind `settings`).
 */
export function pairSettings(items: readonly (SpoolEntry | RefusedEntry)[]): (SpoolEntry | RefusedEntry)[] {
  const isSettings = (x: SpoolEntry | RefusedEntry): boolean => x.kind === 'settings';
  const settingsByStem = new Map<string, SpoolEntry>();
  for (const x of items) if (isSettings(x) && !('reason' in x)) settingsByStem.set(entryStem(x.name), x);
  const claimed = new Set<SpoolEntry>();
  const out: (SpoolEntry | RefusedEntry)[] = [];
  for (const x of items) {
    if (isSettings(x)) continue;
    const settings = settingsByStem.get(entryStem(x.name));
    if (settings === undefined || 'reason' in x) {
      if (settings !== undefined) claimed.add(settings);
      out.push(x);
      continue;
    }
    claimed.add(settings);
    out.push({ ...x, fingerprint: `${x.fingerprint}+settings:${settings.fingerprint}`, settings: { name: settings.name, path: settings.path } });
  }
  for (const x of items) if (isSettings(x) && ('reason' in x || !claimed.has(x))) out.push(x);
  return out;
}

/**
 * One top-level item, for a daemon that rescans only what changed: an entry, a refusal, or
 * null for a name that is ignored. Collisions need every entry: see `refuseCollisions`.
 */
export async function inspectEntry(dir: string, name: string, opts: ScanOptions = {}): Promise<SpoolEntry | RefusedEntry | null> {
  const prefix = opts.prefix ?? '';
  checkNamePrefix(prefix);
  if (name.startsWith('.') || name === '' || name.includes('/')) return null;
  return inspect(dir, name, prefix);
}

async function inspect(dir: string, name: string, prefix: string): Promise<SpoolEntry | RefusedEntry> {
  const path = join(dir, name);
  const c = await classify(path);
  if ('reason' in c) return { name, path, reason: c.reason };
  const named = domainNameFor(entryStem(name), prefix);
  if ('reason' in named) return { name, path, kind: c.kind, reason: named.reason };
  return { name, path, kind: c.kind, domainName: named.name, fingerprint: c.fingerprint };
}

/** Two entries for one domain name: neither wins, so nothing depends on the order of a listing. */
export function refuseCollisions(candidates: readonly SpoolEntry[]): { entries: SpoolEntry[]; refused: RefusedEntry[] } {
  const byDomain = new Map<string, SpoolEntry[]>();
  for (const e of candidates) byDomain.set(e.domainName, [...(byDomain.get(e.domainName) ?? []), e]);
  const entries: SpoolEntry[] = [];
  const refused: RefusedEntry[] = [];
  for (const e of candidates) {
    const same = byDomain.get(e.domainName)!;
    if (same.length === 1) {
      entries.push(e);
      continue;
    }
    // Names are quoted as JSON: an entry name may hold a newline, a log line may not.
    const others = same.filter((o) => o !== e).map((o) => JSON.stringify(o.name));
    refused.push({
      name: e.name,
      path: e.path,
      kind: e.kind,
      domainName: e.domainName,
      reason: `name collision: ${JSON.stringify(e.name)} and ${others.join(', ')} would all be domain '${e.domainName}'; rename one of them`,
    });
  }
  return { entries, refused };
}

/** What one top-level item is, with its fingerprint, or why it is refused. */
async function classify(path: string): Promise<Classified> {
  let st: Stats;
  try {
    st = await lstat(path);
  } catch (e) {
    return { reason: `cannot be examined (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  // a settings file is judged when it is read (through the one-fd reader, which refuses links and
  // anything but a regular file), so that the entry it belongs to fails with the reason
  if (isSettingsName(basename(path))) return { kind: 'settings', fingerprint: `settings:${identity(st)}` };
  if (st.isSymbolicLink()) return { reason: 'is a symlink: spool entries must be real directories or files (a link could point anywhere on the host)' };
  if (st.isFile()) {
    if (!IMAGE_SUFFIXES.some((s) => path.endsWith(s)))
      return { reason: `is a file but neither an image archive (${IMAGE_SUFFIXES.join(', ')}) nor a settings file (NAME.ocivirt.json)` };
    // An archive is read whole later; its identity (inode, size, times) is enough to see a change.
    return { kind: 'archive', fingerprint: `archive:${identity(st)}` };
  }
  if (!st.isDirectory()) return { reason: 'is neither a directory nor a regular file' };

  try {
    // held open: a swap of the entry for a symlink after the lstat leads nowhere
    return await withSpoolEntry(path, 'directory', (dir) => classifyDirectory(dir.at));
  } catch (e) {
    if (e instanceof UnreadableFile) return { reason: e.message };
    throw e;
  }
}

/** A directory entry reached through `at`: a bundle, an image layout, or refused. */
async function classifyDirectory(at: string): Promise<Classified> {
  const [config, layout] = await Promise.all([lstatOrNull(join(at, 'config.json')), lstatOrNull(join(at, 'oci-layout'))]);
  if (config && layout) return { reason: 'has both config.json (bundle) and oci-layout (image layout): it must be one or the other' };
  if (config) return { kind: 'bundle', fingerprint: await bundleFingerprint(at) };
  if (layout) return { kind: 'layout', fingerprint: await layoutFingerprint(at) };
  return { reason: 'is a directory with neither config.json (a bundle) nor oci-layout (an image layout)' };
}

/** Its lstat, or null when it is not there; any other error refuses the entry (never "missing"). */
async function lstatOrNull(path: string): Promise<Stats | null> {
  try {
    return await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw new UnreadableFile(`${basename(path)} cannot be examined (${code ?? errorMessage(e)})`, code);
  }
}

function identity(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

/**
 * sha256 of config.json plus the identity of the rootfs directory it names: a new config or a
 * replaced rootfs (renamed in, re-created) changes it. Files changed deep inside the same rootfs
 * directory do not; they are the container's data, not its definition.
 */
async function bundleFingerprint(bundle: string): Promise<string> {
  const config = await readSmallRegularFile(join(bundle, 'config.json')).catch(rethrowAs('config.json'));
  const hash = createHash('sha256').update(config.data);
  let rootPath: unknown;
  try {
    rootPath = (JSON.parse(config.data.toString('utf8')) as { root?: { path?: unknown } })?.root?.path;
  } catch {
    // not JSON: the bundle module refuses it with the JSON error; the content hash still tracks edits
  }
  if (typeof rootPath === 'string' && rootPath !== '') {
    const rootfs = isAbsolute(rootPath) ? rootPath : `${bundle}/${rootPath}`; // as the kernel resolves it: no lexical `..`
    const st = await stat(rootfs).catch(() => null);
    hash.update(`\0rootfs:${st ? identity(st) : 'missing'}`);
  }
  return `bundle:sha256:${hash.digest('hex')}`;
}

/** sha256 of index.json (it names every manifest; blobs are content-addressed beneath it). */
async function layoutFingerprint(layout: string): Promise<string> {
  const [index, marker] = await Promise.all([
    readSmallRegularFile(join(layout, 'index.json')).catch(rethrowAs('index.json')),
    readSmallRegularFile(join(layout, 'oci-layout')).catch(rethrowAs('oci-layout')),
  ]);
  return `layout:sha256:${createHash('sha256').update(marker.data).update('\0').update(index.data).digest('hex')}`;
}

function rethrowAs(file: string) {
  return (e: unknown): never => {
    if (e instanceof UnreadableFile) throw new UnreadableFile(`${file} ${e.message}`, e.code);
    throw e;
  };
}
