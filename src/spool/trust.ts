/**
 * Trust boundaries (issue 5). Whoever can write the spool can run containers as root, so:
 * - the spool, state and export directories must not be writable by anyone but their owner
 *   (root or the user ocivirt runs as), nor may any directory above them let someone else
 *   rename them away, unless a setting allows it (then the problems come back as warnings);
 * - a bundle's root.path must resolve, symlinks followed, to a directory inside the bundle, and
 *   every mount that takes a host path must take it from inside the bundle or under a configured
 *   allow-list, so `root.path: "/"` or a bind of `/` cannot hand a container the host.
 * Both only look (stat, realpath); the daemon decides what to do with the answer.
 */
import type { Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, sep } from 'node:path';
import { InputError } from '../errors.js';
import type { Mount, RuntimeConfig } from '../oci/runtime-spec.js';
import type { HeldEntry } from './read.js';

export interface DirectoryTrustOptions {
  /** Accept what would be refused, reporting it as warnings (the daemon logs them loudly). */
  allowInsecure?: boolean;
  /** The user ocivirt runs as; default: this process's. */
  uid?: number;
}

const mode = (st: Stats) => `0${(st.mode & 0o7777).toString(8)}`;

/**
 * Refuses (InputError naming the directory) a directory that another user could write, or
 * replace by writing one of its parents. A sticky parent (like /tmp) is fine: there nobody but
 * the owner can rename what we own.
 */
export async function checkDirectoryTrust(path: string, opts: DirectoryTrustOptions = {}): Promise<{ warnings: string[] }> {
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    throw new InputError(`cannot be used (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file: path });
  }
  const st = await stat(real);
  if (!st.isDirectory()) throw new InputError('is not a directory', { file: path });

  const problems = await writerProblems(real, st, uid);
  if (problems.length === 0) return { warnings: [] };
  if (opts.allowInsecure) return { warnings: problems.map((p) => `insecure (allowed by setting): ${p}`) };
  throw new InputError(
    `refused: ${problems[0]} (another user could plant or swap what ocivirt reads or writes there, and spool entries run as root; fix the mode or owner, or set allowInsecureDirs)`,
    { file: path },
  );
}

/**
 * Who besides root and `uid` could change what `real` (a resolved path, `st` its stat) holds:
 * its owner and mode, and every directory above it (which could swap it unless sticky).
 */
export async function writerProblems(real: string, st: Stats, uid: number): Promise<string[]> {
  const problems: string[] = [];
  const trustedOwner = (s: Stats) => s.uid === 0 || s.uid === uid;
  if (!trustedOwner(st)) problems.push(`${real} is owned by uid ${st.uid}, not by root or uid ${uid}`);
  if (st.mode & 0o022) problems.push(`${real} is writable by group or others (mode ${mode(st)})`);
  for (let dir = dirname(real), child = real; dir !== child; child = dir, dir = dirname(dir)) {
    const parent = await stat(dir);
    if (!trustedOwner(parent)) problems.push(`parent ${dir} is owned by uid ${parent.uid}, not by root or uid ${uid}`);
    if (parent.mode & 0o022 && !(parent.mode & 0o1000))
      problems.push(`parent ${dir} is writable by group or others without the sticky bit (mode ${mode(parent)}), so ${child} can be swapped`);
  }
  return problems;
}

/** Filesystems whose `source` is a label, never a host path. */
const PSEUDO_FILESYSTEMS = new Set(['proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2', 'securityfs', 'hugetlbfs', 'devtmpfs']);
/** Mount options that name host directories (overlay). */
const PATH_OPTIONS = /^(lowerdir|upperdir|workdir)=(.*)$/;

export interface BundlePaths {
  /** root.path resolved, symlinks followed: use this, not the configured string. */
  rootfs: string;
  /** The same directory reached through the bundle directory as given (held open: its /proc/self/fd path), for reading it. */
  rootfsAt: string;
  /** The host paths mounts take, resolved, by mount index. */
  mountSources: { index: number; field: string; path: string }[];
}

/**
 * Checks where a bundle's paths really lead. Relative paths are relative to the bundle, as the
 * runtime-spec says. A spool bundle is given held open: its paths are resolved from the directory
 * that was opened and read, whatever its name in the spool leads to now. Throws an InputError
 * naming `file` (default `<bundleDir>/config.json`) and the field.
 */
export async function checkBundlePaths(
  config: RuntimeConfig,
  bundleDir: string | HeldEntry,
  allowList: readonly string[],
  file = join(typeof bundleDir === 'string' ? bundleDir : bundleDir.at, 'config.json'),
): Promise<BundlePaths> {
  const base = typeof bundleDir === 'string' ? bundleDir : bundleDir.at;
  const bundle = await realBundle(bundleDir).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`bundle directory cannot be used (${e.code ?? e.message})`, { file });
  });
  const allowed = await resolveAllowList(allowList);

  const real = async (p: string, field: string) => {
    // No path.resolve/join: they drop `x/..` lexically, while the kernel (and libvirt) follow
    // `x` first when it is a symlink. realpath(3) resolves the string as the kernel would.
    const full = isAbsolute(p) ? p : `${base}/${p}`;
    try {
      return await realpath(full);
    } catch (e) {
      throw new InputError(`${JSON.stringify(p)} cannot be resolved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file, field });
    }
  };

  const rootPath = config.root?.path;
  if (typeof rootPath !== 'string' || rootPath === '') throw new InputError('required', { file, field: 'root.path' });
  const rootfs = await real(rootPath, 'root.path');
  if (!isStrictlyInside(rootfs, bundle))
    throw new InputError(`${JSON.stringify(rootPath)} resolves to ${rootfs}, outside the bundle ${bundle}: the rootfs must be a directory inside its bundle`, {
      file,
      field: 'root.path',
    });
  if (!(await stat(rootfs)).isDirectory()) throw new InputError(`${JSON.stringify(rootPath)} is not a directory`, { file, field: 'root.path' });

  const mountSources: BundlePaths['mountSources'] = [];
  for (const [index, m] of (config.mounts ?? []).entries()) {
    for (const { field, path } of hostPathsOf(m, `mounts[${index}]`, file)) {
      const resolved = await real(path, field);
      const refused = outsideAllowed(path, resolved, bundle, allowed);
      if (refused !== undefined) throw new InputError(refused, { file, field });
      mountSources.push({ index, field, path: resolved });
    }
  }
  return { rootfs, rootfsAt: join(base, relative(bundle, rootfs)), mountSources };
}

/** Where the bundle is: a held spool bundle as the kernel names its open directory (see HeldEntry.real). */
function realBundle(bundleDir: string | HeldEntry): Promise<string> {
  return typeof bundleDir === 'string' ? realpath(bundleDir) : bundleDir.real();
}

/** Why a host path a mount would take is refused, or undefined when it is inside the bundle or the allow-list. */
function outsideAllowed(path: string, resolved: string, bundle: string, allowed: readonly string[]): string | undefined {
  if (isInsideOrSame(resolved, bundle) || allowed.some((a) => isInsideOrSame(resolved, a))) return undefined;
  return `host path ${JSON.stringify(path)} resolves to ${resolved}, outside the bundle and the allowed mount sources (${
    allowed.length ? allowed.join(', ') : 'none configured'
  })`;
}

/**
 * The bind-mount rule of `checkBundlePaths` for a host path given elsewhere (a settings file's
 * volume): the resolved path, or why it is refused. The same function decides both.
 */
export async function checkMountSource(path: string, bundleDir: string | HeldEntry, allowList: readonly string[]): Promise<{ resolved: string } | { reason: string }> {
  const bundle = await realBundle(bundleDir);
  let resolved: string;
  try {
    resolved = await realpath(path);
  } catch (e) {
    return { reason: `${JSON.stringify(path)} cannot be resolved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` };
  }
  const refused = outsideAllowed(path, resolved, bundle, await resolveAllowList(allowList));
  return refused === undefined ? { resolved } : { reason: refused };
}

/** The host paths a mount would expose: a bind's source, a non-pseudo filesystem's device, overlay dirs. */
function hostPathsOf(m: Mount, at: string, file: string): { field: string; path: string }[] {
  const options = m.options ?? [];
  const isBind = m.type === 'bind' || options.includes('bind') || options.includes('rbind');
  const out: { field: string; path: string }[] = [];
  if (isBind) {
    if (typeof m.source !== 'string' || m.source === '') throw new InputError('a bind mount needs a source', { file, field: `${at}.source` });
    out.push({ field: `${at}.source`, path: m.source });
    return out;
  }
  if (m.type !== undefined && PSEUDO_FILESYSTEMS.has(m.type)) return out;
  if (typeof m.source === 'string' && isAbsolute(m.source)) out.push({ field: `${at}.source`, path: m.source });
  options.forEach((o, i) => {
    const match = PATH_OPTIONS.exec(o);
    if (match) for (const p of match[2]!.split(':')) if (p !== '') out.push({ field: `${at}.options[${i}]`, path: p });
  });
  return out;
}

async function resolveAllowList(list: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const entry of list) {
    if (!isAbsolute(entry)) throw new InputError(`allowed mount source ${JSON.stringify(entry)} must be an absolute path`, { field: 'bindAllowList' });
    const real = await realpath(entry).catch(() => null); // a missing directory allows nothing
    if (real !== null) out.push(real);
  }
  return out;
}

function isStrictlyInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && !rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel);
}

function isInsideOrSame(path: string, dir: string): boolean {
  return path === dir || isStrictlyInside(path, dir);
}

export interface HostDeviceAllowList {
  /** Host device nodes (`/dev/fuse`) a container may be given through linux.devices. */
  devices?: readonly string[];
  /** Host network interfaces a container may take through linux.netDevices. */
  netDevices?: readonly string[];
}

/**
 * linux.devices become host device passthrough (`<hostdev>` of the node at the same path) and
 * linux.netDevices move a host interface into the container: a `b 8:0 /dev/sda` entry hands
 * over the host's disk as surely as a bind of `/`. So, like bind sources, they need an
 * allow-list. FIFOs (`p`) are created in the container, not passed through, so they pass.
 */
export function checkHostDevices(config: RuntimeConfig, configFile: string, allow: HostDeviceAllowList = {}): void {
  const devices = new Set(allow.devices ?? []);
  for (const [i, d] of (config.linux?.devices ?? []).entries()) {
    if (d.type === 'p' || devices.has(d.path)) continue;
    throw new InputError(
      `host device ${JSON.stringify(d.path)} is not in the allowed devices (${devices.size ? [...devices].join(', ') : 'none configured'})`,
      { file: configFile, field: `linux.devices[${i}].path` },
    );
  }
  const interfaces = new Set(allow.netDevices ?? []);
  for (const name of Object.keys(config.linux?.netDevices ?? {}))
    if (!interfaces.has(name))
      throw new InputError(
        `host interface ${JSON.stringify(name)} is not in the allowed network devices (${interfaces.size ? [...interfaces].join(', ') : 'none configured'})`,
        { file: configFile, field: `linux.netDevices${/^[A-Za-z_$][\w$]*$/.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`}` },
      );
}
