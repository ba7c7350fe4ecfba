/** The few host facts the CLI and daemon hand to the (I/O-free) converter. */
import { statfsSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { InputError } from '../errors.js';
import { resolveInRootSync } from '../fsroot/index.js';
import { readUserDb } from '../fsroot/userdb.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';
import type { Domain } from '../xml/domain.js';
import type { ExecutableResolver, HostDeviceNode } from './context.js';
import { toNative } from './to-native.js';

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** 2 when /sys/fs/cgroup is a cgroup2 mount (unified), else 1 (legacy or hybrid). */
export function detectCgroupVersion(): 1 | 2 {
  try {
    return statfsSync('/sys/fs/cgroup').type === CGROUP2_SUPER_MAGIC ? 2 : 1;
  } catch {
    return 1;
  }
}

/** stat(2) of a host device node, or undefined when the path is not one. */
export function statHostDevice(path: string): HostDeviceNode | undefined {
  try {
    const st = statSync(path);
    if (!st.isCharacterDevice() && !st.isBlockDevice()) return undefined;
    // Linux dev_t: major in bits 8-19 (and 32+), minor in bits 0-7 and 20-31.
    const rdev = st.rdev;
    const major = ((rdev >> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
    const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    return { type: st.isCharacterDevice() ? 'c' : 'b', major, minor };
  } catch {
    return undefined;
  }
}

/**
 * The argv0 lookup from-native needs, over the real rootfs: a bare name through the PATH dirs,
 * a relative path from cwd, each resolved with symlinks scoped to the rootfs. Returns the path
 * inside the container of the first regular executable file.
 */
export function rootfsExecutableResolver(rootfs: string): ExecutableResolver {
  return (argv0, searchPath, cwd) => {
    const candidates = argv0.includes('/') ? [posix.resolve(cwd, argv0)] : searchPath.map((dir) => posix.join(dir, argv0));
    for (const inside of candidates) {
      try {
        const host = resolveInRootSync(rootfs, inside);
        const st = statSync(host);
        if (st.isFile() && (st.mode & 0o111) !== 0) return inside;
      } catch {
        // not there (or a symlink loop): try the next candidate
      }
    }
    return undefined;
  };
}

/**
 * A name -> id lookup over the text of a rootfs's /etc/passwd and /etc/group (either may be
 * missing): `name:x:id:...` lines, the first entry of a name wins.
 */
export function idLookup(passwd: string | undefined, group: string | undefined): (kind: 'user' | 'group', name: string) => number | undefined {
  const table = (text: string | undefined) => {
    const ids = new Map<string, number>();
    for (const line of (text ?? '').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && id !== undefined && /^\d+$/.test(id) && !ids.has(name)) ids.set(name, Number(id));
    }
    return ids;
  };
  const users = table(passwd);
  const groups = table(group);
  return (kind, name) => (kind === 'user' ? users : groups).get(name);
}

/** Names in <inituser>/<initgroup> are resolved against the root filesystem's /etc/passwd and /etc/group. */
async function rootfsIdLookup(domain: Domain, file: string): Promise<ReturnType<typeof idLookup> | undefined> {
  const named = [domain.os.inituser, domain.os.initgroup].some((v) => v !== undefined && !/^\+?\d+$/.test(v));
  const rootfs = domain.devices.filesystems.find((fs) => fs.target === '/' && fs.type === 'mount')?.source.dir;
  if (!named || rootfs === undefined) return undefined;
  try {
    const db = await readUserDb(rootfs);
    return idLookup(db.passwd, db.group);
  } catch (e) {
    throw new InputError(`cannot read the rootfs user database: ${e instanceof InputError ? e.reason : (e as Error).message}`, { file, field: 'os.inituser' });
  }
}

/**
 * A domain -> its OCI config with this host's facts (user and group names from the rootfs, device
 * numbers): the one function `ocivirt to-native` and the exporter both run. Errors name `file`.
 */
export async function domainToConfig(domain: Domain, file: string): Promise<{ config: RuntimeConfig; warnings: string[] }> {
  const lookupId = await rootfsIdLookup(domain, file);
  try {
    return toNative(domain, { hostDevice: statHostDevice, lookupId });
  } catch (e) {
    throw e instanceof InputError ? e.inFile(file) : e;
  }
}
