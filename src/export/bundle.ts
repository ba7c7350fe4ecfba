/**
 * A self-contained export (`ocivirt export --rootfs`): a bundle that, copied into an empty spool
 * as it is, gives back the same domain. The config-only export names the rootfs by its absolute
 * path (usually in ocivirt's state directory) and mounts volumes from `<state>/volumes/`, both of
 * which the spool's trust check rightly refuses. So here:
 * - the domain's root tree is copied to `<dir>/rootfs` and root.path is the relative "rootfs";
 * - a bind of an ocivirt volume of this state directory leaves config.json and becomes a settings
 *   `volumes` entry `NAME:/dest[:ro]` in `<dir>.ocivirt.json`, beside the bundle as the spool wants
 *   it: the daemon mounts volumes from its own store after the trust check, so nothing is widened.
 * - what only a settings file may say to the daemon (network/entry.ts: the annotation
 *   org.ocivirt.networks, and org.ocivirt.settings.* such as publish and stopSignal) leaves
 *   config.json for the same settings file, as its keys (`networks`, `publish`, `stopSignal` …);
 * The rootfs is copied under a staging name and renamed into place: a crash never leaves half a
 * rootfs under the name `rootfs`, and the next run removes what a crash left.
 */
import { lstat, readdir, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, relative, sep, isAbsolute } from 'node:path';
import { domainToConfig } from '../convert/host.js';
import { InputError } from '../errors.js';
import { DomainNotFoundError, type LibvirtPort } from '../libvirt/port.js';
import type { Mount, RuntimeConfig } from '../oci/runtime-spec.js';
import { copyTree } from '../fsroot/copy.js';
import { SETTINGS_SUFFIX } from '../spool/names.js';
import { isVolumeName, volumesDir } from '../volumes/names.js';
import { parseDomainXml } from '../xml/parse.js';
import { syncDirectory, writeFileAtomically } from '../fsroot/atomic.js';
import { ensureOwnDirectory, writeConfigAtomically } from './write.js';
import { NETWORKS_ANNOTATION, parseNetworksAnnotation } from '../convert/passes/networks.js';
import { isSettingsOnly } from '../network/entry.js';
import { RECORDED_PREFIX, type PublishedPort } from '../settings/keys.js';

/** Names inside the bundle of a rootfs being copied in, and of the one it replaces. */
const STAGING_PREFIX = '.rootfs.staging-';
const OLD_PREFIX = '.rootfs.old-';

export interface SelfContainedOptions {
  /** ocivirt's state directory: binds of its volumes become settings volumes. */
  stateDir?: string;
  /** The daemon's bindAllowList: a bind left in config.json outside it (and the bundle) is warned about. */
  bindAllowList?: readonly string[];
  /** Free space the rootfs copy must leave (unpackLimits.minFreeBytes). */
  minFreeBytes?: number;
  signal?: AbortSignal;
}

export interface SelfContainedExport {
  configPath: string;
  rootfs: string;
  /** The settings file written beside the bundle; undefined when there was nothing to say. */
  settingsPath?: string;
  /** The settings `volumes` entries, e.g. `cache:/var/cache:ro`. */
  volumes: string[];
  config: RuntimeConfig;
  warnings: string[];
}

/** Where the settings file of the bundle directory `bundleDir` goes: beside it, `<dir>.ocivirt.json`. */
export function settingsPathOf(bundleDir: string): string {
  return `${bundleDir.replace(/\/+$/, '')}${SETTINGS_SUFFIX}`;
}

/**
 * Exports domain `name` into `bundleDir` as a self-contained bundle (see above). An existing
 * `<dir>/rootfs` is replaced: the new one is copied in beside it first, then the two renamed.
 * Throws an InputError when the domain is not there or has no root directory to copy.
 */
export async function exportSelfContained(port: LibvirtPort, name: string, bundleDir: string, opts: SelfContainedOptions = {}): Promise<SelfContainedExport> {
  let xml: string;
  try {
    xml = await port.inactiveXml(name);
  } catch (e) {
    if (e instanceof DomainNotFoundError) throw new InputError(`no such domain on ${port.uri}`, { file: name });
    throw e;
  }
  const domain = parseDomainXml(xml, `domain ${name}`);
  const rootDir = domain.devices.filesystems.find((fs) => fs.target === '/' && fs.type === 'mount')?.source.dir;
  if (rootDir === undefined) throw new InputError("has no <filesystem type='mount'> with target '/': no root directory to copy", { file: `domain ${name}` });
  const { config, warnings } = await domainToConfig(domain, `domain ${name}`);
  // cp -a of a tree into itself would copy what it is writing
  if (isInside(await realpathOrSelf(bundleDir), await realpathOrSelf(rootDir)))
    throw new InputError(`is inside the tree it would copy, ${rootDir} (the root of domain ${name})`, { file: bundleDir });

  const { kept, volumes } = await splitVolumeMounts(config.mounts ?? [], opts.stateDir);
  const moved = settingsOfAnnotations(config.annotations ?? {});
  const bundle: RuntimeConfig = { ...config, root: { ...config.root, path: 'rootfs' } };
  if (config.annotations !== undefined) {
    if (Object.keys(moved.kept).length) bundle.annotations = moved.kept;
    else delete bundle.annotations;
  }
  if (config.mounts !== undefined) bundle.mounts = kept;
  warnings.push(...(await outsideWarnings(kept, bundleDir, opts.bindAllowList ?? [])));

  await ensureOwnDirectory(bundleDir);
  await removeLeftovers(bundleDir);
  const rootfs = await replaceRootfs(rootDir, bundleDir, opts);
  // the config last: a bundle whose config.json names "rootfs" always has a whole one
  const configPath = await writeConfigAtomically(bundleDir, bundle);
  const settingsPath = settingsPathOf(bundleDir);
  const settings = { ...(volumes.length ? { volumes } : {}), ...moved.settings };
  const any = Object.keys(settings).length > 0;
  if (any) await writeFileAtomically(settingsPath, JSON.stringify(settings, null, 2) + '\n', 0o600);
  // nothing to say: a settings file an earlier export left would say something wrong
  else await rm(settingsPath, { force: true });
  return { configPath, rootfs, ...(any ? { settingsPath } : {}), volumes, config: bundle, warnings };
}

/**
 * The mounts that stay in config.json, and the settings volumes for those that bind a volume
 * directory of `stateDir`: a real path exactly `<state>/volumes/<name>`, `name` one ocivirt gives
 * (named or an image VOLUME's anonymous one). Anything else, a subdirectory of a volume included,
 * stays a bind mount.
 */
export async function splitVolumeMounts(mounts: readonly Mount[], stateDir: string | undefined): Promise<{ kept: Mount[]; volumes: string[] }> {
  const store = stateDir === undefined ? undefined : await realpath(volumesDir(stateDir)).catch(() => undefined);
  const kept: Mount[] = [];
  const volumes: string[] = [];
  for (const m of mounts) {
    const options = m.options ?? [];
    const isBind = m.type === 'bind' || options.includes('bind') || options.includes('rbind');
    const real = store !== undefined && isBind && m.source !== undefined ? await realpath(m.source).catch(() => undefined) : undefined;
    if (real !== undefined && dirname(real) === store && isVolumeName(basename(real))) {
      volumes.push(`${basename(real)}:${m.destination}${options.includes('ro') ? ':ro' : ''}`);
    } else kept.push(m);
  }
  return { kept, volumes };
}

/**
 * The annotations only a settings file may say to the daemon, as settings keys (the networks as
 * given, ports back in their `HOSTPORT:PORT` form, a timeout as a number); the rest stay.
 * Anything not readable back stays an annotation (the daemon drops it with a warning).
 */
export function settingsOfAnnotations(annotations: Record<string, string>): { kept: Record<string, string>; settings: Record<string, unknown> } {
  const kept: Record<string, string> = {};
  const settings: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(annotations)) {
    const value = isSettingsOnly(k) ? settingValueOf(k, v) : undefined;
    if (value === undefined) kept[k] = v;
    else settings[k === NETWORKS_ANNOTATION ? 'networks' : k.slice(RECORDED_PREFIX.length)] = value;
  }
  return { kept, settings };
}

function settingValueOf(key: string, value: string): unknown {
  if (key === NETWORKS_ANNOTATION) {
    const list = parseNetworksAnnotation(value);
    return typeof list === 'string' ? undefined : list;
  }
  if (!key.startsWith(RECORDED_PREFIX)) return undefined;
  const name = key.slice(RECORDED_PREFIX.length);
  if (name === 'publish') {
    try {
      const ports = JSON.parse(value) as PublishedPort[];
      return ports.map((p) => `${p.hostIp !== undefined ? `${p.hostIp}:` : ''}${p.hostPort}:${p.port}/${p.protocol}`);
    } catch {
      return undefined;
    }
  }
  if (name === 'stopTimeout') return /^\d+$/.test(value) ? Number(value) : undefined;
  return ['stopSignal', 'restart'].includes(name) ? value : undefined;
}

/** `path` is `dir` or under it. */
function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (rel !== '..' && !rel.startsWith('..' + sep) && !isAbsolute(rel));
}

/** The real path of `path`, or of its nearest existing parent with the rest appended. */
async function realpathOrSelf(path: string): Promise<string> {
  const real = await realpath(path).catch(() => undefined);
  if (real !== undefined) return real;
  const parent = dirname(path);
  return parent === path ? path : join(await realpathOrSelf(parent), basename(path));
}

/** Host paths the spool's trust check will refuse: outside the bundle and the allow-list. */
async function outsideWarnings(mounts: readonly Mount[], bundleDir: string, allowList: readonly string[]): Promise<string[]> {
  const allowed = await Promise.all(allowList.map((a) => realpath(a).catch(() => a)));
  const out: string[] = [];
  for (const m of mounts) {
    const options = m.options ?? [];
    if (!(m.type === 'bind' || options.includes('bind') || options.includes('rbind')) || m.source === undefined) continue;
    const real = await realpath(m.source).catch(() => m.source!);
    if (!isInside(real, bundleDir) && !allowed.some((a) => isInside(real, a)))
      out.push(`mount ${m.destination}: host path ${m.source} is outside the bundle and bindAllowList; a spool entry of this export is refused unless it is allowed`);
  }
  return out;
}

/** Staging copies and replaced trees a crash left in the bundle. */
async function removeLeftovers(bundleDir: string): Promise<void> {
  for (const n of await readdir(bundleDir)) {
    if (n.startsWith(STAGING_PREFIX) || n.startsWith(OLD_PREFIX)) await rm(join(bundleDir, n), { recursive: true, force: true });
  }
}

/** Copies `from` to a staging name in the bundle, then renames it to `rootfs` (the old one moved away first, then removed). */
async function replaceRootfs(from: string, bundleDir: string, opts: SelfContainedOptions): Promise<string> {
  const tag = `${process.pid}-${Date.now()}`;
  const staging = join(bundleDir, `${STAGING_PREFIX}${tag}`);
  const target = join(bundleDir, 'rootfs');
  try {
    await copyTree(from, staging, opts.signal, opts.minFreeBytes);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
  const old = join(bundleDir, `${OLD_PREFIX}${tag}`);
  const existing = await lstat(target).catch(() => undefined);
  if (existing !== undefined) await rename(target, old);
  await rename(staging, target);
  await syncDirectory(bundleDir);
  await rm(old, { recursive: true, force: true });
  return target;
}
