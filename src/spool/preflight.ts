/**
 * What libvirt-lxc only rejects at start (mapping notes §6.9), checked against the rootfs before
 * define: a define succeeds, and the start fails later, after a timeout, with a message about a
 * path inside the container. Checked here, from the domain about to be defined (what libvirt
 * will do) and the real rootfs, with paths resolved inside it as the container would see them.
 *
 * - `<init>` must be an executable file in the rootfs, unless a mount provides it.
 * - With a read-only root (`root.readonly`), libvirt cannot create its mount points: the
 *   rootfs must already have /proc, /sys and /dev (lxc_container.c mkdirs them after the
 *   read-only remount; /dev/pts, /proc/sys and /sys/fs/cgroup live inside those mounts), and
 *   every mount destination that is not inside another mount.
 * - No mount destination may lead into `/.oldroot` (a symlink in the rootfs, absolute or through
 *   `..`): libvirt makes its mount points after pivot_root, while the host's root is still
 *   mounted there, and creates a missing target by following the link (verified on libvirt 9:
 *   an /etc/hosts linked to /.oldroot/tmp/x made /tmp/x on the host). Every pass checks again
 *   (a rootfs its container wrote meanwhile), and so does every start ocivirt makes; a restart
 *   libvirt makes by itself (the container rebooting) is not seen here.
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { resolveInRoot } from '../fsroot/index.js';
import type { Domain } from '../xml/domain.js';
import { SHIM_MOUNT, SHIM_RUN, shimmedProgram } from '../shim/domain.js';

/** Where libvirt-lxc keeps the host's root while it mounts the container's filesystems. */
export const OLDROOT = '/.oldroot';

/** The mount points libvirt-lxc makes in every container's root. */
export const LIBVIRT_MOUNT_POINTS = ['/proc', '/sys', '/dev'] as const;

export interface StartProblem {
  /** The config field at fault. */
  field: string;
  /** The path inside the container. */
  path: string;
  reason: string;
}

const isUnder = (path: string, dir: string) => dir !== '/' && (path === dir || path.startsWith(dir + '/'));

async function statInRoot(rootfs: string, path: string): Promise<Stats | undefined> {
  try {
    return await stat(await resolveInRoot(rootfs, path));
  } catch {
    return undefined; // missing, or a symlink loop: not usable either way
  }
}

/**
 * The mount points of a start of `domain` over `rootfs` (its mounts' destinations and libvirt's
 * own) that lead into `/.oldroot` through a symlink of the rootfs: libvirt would create or mount
 * them on the host's root. Checked before define and again right before each start ocivirt makes
 * (reconcile/start-check.ts), as the container may have written its rootfs meanwhile.
 */
export async function mountsOntoHost(domain: Domain, rootfs: string, at = rootfs): Promise<StartProblem[]> {
  const problems: StartProblem[] = [];
  const oldroot = join(at, OLDROOT);
  const targets = domain.devices.filesystems.map((fs) => fs.target).filter((t): t is string => t !== undefined && t !== '/');
  for (const target of new Set([...targets.map((t) => posix.normalize(t)), ...LIBVIRT_MOUNT_POINTS])) {
    const where = await resolveInRoot(at, target).catch(() => undefined);
    if (where !== undefined && (where === oldroot || where.startsWith(oldroot + '/')))
      problems.push({
        field: 'mounts',
        path: target,
        reason: `the mount point ${target} leads to ${where.slice(at.length)} in the rootfs ${rootfs} (a symlink): libvirt would create or mount it on the host's root (${OLDROOT} while it mounts); refused`,
      });
  }
  return problems;
}

/**
 * The problems a start of `domain` over `rootfs` would hit; empty when none is known. The rootfs
 * is looked at through `at` (the same directory reached through a held bundle), named `rootfs`.
 */
export async function startProblems(domain: Domain, rootfs: string, at = rootfs): Promise<StartProblem[]> {
  const problems: StartProblem[] = [];
  const filesystems = domain.devices.filesystems;
  const mountTargets = filesystems.map((fs) => fs.target).filter((t): t is string => t !== undefined && t !== '/').map((t) => posix.normalize(t));

  problems.push(...(await mountsOntoHost(domain, rootfs, at)));

  // through the init shim: the program it runs (the shim itself comes with its mount)
  const shimmed = shimmedProgram(domain);
  const init = shimmed ?? domain.os.init;
  const providers = shimmed === undefined ? mountTargets : mountTargets.filter((t) => t !== SHIM_MOUNT && t !== SHIM_RUN);
  if (init !== undefined && !providers.some((t) => isUnder(init, t))) {
    const st = await statInRoot(at, init);
    if (!st?.isFile() || (st.mode & 0o111) === 0)
      problems.push({
        field: 'process.args[0]',
        path: init,
        reason: `${init} is not an executable file in the rootfs ${rootfs} (nor provided by a mount): the container could not start`,
      });
  }

  const root = filesystems.find((fs) => fs.target === '/');
  if (root?.readonly) {
    for (const dir of LIBVIRT_MOUNT_POINTS) {
      if ((await statInRoot(at, dir))?.isDirectory()) continue;
      problems.push({
        field: 'root.readonly',
        path: dir,
        reason: `the read-only rootfs ${rootfs} has no directory ${dir}, and libvirt cannot create it at start ("Failed to mkdir ${dir}: Read-only file system"): add it to the rootfs`,
      });
    }
    const provided = [...LIBVIRT_MOUNT_POINTS, ...mountTargets];
    for (const target of mountTargets) {
      if (provided.some((other) => other !== target && isUnder(target, other))) continue; // inside a mount, not the rootfs
      if ((await statInRoot(at, target)) !== undefined) continue;
      problems.push({
        field: 'root.readonly',
        path: target,
        reason:
          target === SHIM_MOUNT
            ? `the read-only rootfs ${rootfs} has no directory ${SHIM_MOUNT}, where ocivirt's init shim is mounted, and libvirt cannot create it at start: add an empty ${SHIM_MOUNT} to the rootfs`
            : `the mount destination ${target} does not exist in the read-only rootfs ${rootfs}, and libvirt cannot create it at start: add it to the rootfs`,
      });
    }
  }
  return problems;
}
