/**
 * The per-domain host directories of the init shim (layout in domain.ts): made before a define
 * and again before every start when missing (a crash, or a state directory restored without
 * them: the definition alone says what goes in), old versions collected at start, all of it
 * removed when the domain is undefined. A version directory is staged beside its name and
 * renamed into place, so it is either whole or absent.
 */
import { constants } from 'node:fs';
import { chmod, chown, copyFile, lchown, lstat, mkdir, mkdtemp, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toNative } from '../convert/to-native.js';
import { syncDirectory } from '../fsroot/atomic.js';
import { LogDir } from '../logs/read.js';
import type { Domain } from '../xml/domain.js';
import { containerDir, GRANTABLE_CAPS, isShimSysctl, SHIM_LOG, SHIM_RUN, SHIM_STATUS, shimLogOf, shimMounts, withoutShim } from './domain.js';
import { encodeShimSpec } from './spec.js';

/** The shim binary `make -C shim` builds (dist/shim/ocivirt-init). */
export const SHIM_BINARY = fileURLToPath(new URL('../../shim/ocivirt-init', import.meta.url));

/**
 * The spec file of a domain that runs through the shim: its process as to-native gives it back,
 * the program as the converter resolved it in the rootfs (what libvirt would have run), its
 * output kept in /.ocivirt/run/log with the cap the definition carries.
 */
export function shimSpecOf(domain: Domain): Buffer {
  const plain = withoutShim(domain);
  const { config } = toNative(plain);
  if (config.process !== undefined && plain.os.init !== undefined) config.process.args = [plain.os.init, ...(config.process.args ?? []).slice(1)];
  if (config.linux?.sysctl !== undefined) config.linux.sysctl = Object.fromEntries(Object.entries(config.linux.sysctl).filter(([k]) => isShimSysctl(k, config)));
  const log = shimLogOf(domain);
  return encodeShimSpec(config, { statusPath: SHIM_STATUS, capabilities: { grantable: GRANTABLE_CAPS }, ...(log !== undefined ? { log } : {}) });
}

/** The host uid and gid of the container's root (its `<idmap>`), which owns the shim files. */
function containerRoot(d: Domain): { uid: number; gid: number } {
  const of = (entries: { start: number; target: number }[]) => entries.find((e) => e.start === 0)?.target ?? 0;
  return { uid: of(d.idmap.uid), gid: of(d.idmap.gid) };
}

async function writeFile(path: string, data: Buffer, mode: number): Promise<void> {
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A directory that must be ours: a real directory (never a symlink), made when missing. */
async function ensureDir(path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true, mode });
  const st = await lstat(path);
  if (!st.isDirectory()) throw new Error(`${path} is not a directory`);
}

/**
 * Makes the shim directories `domain` mounts, when missing. Returns true when it made the
 * version directory. A domain that does not run through the shim needs nothing.
 */
export async function prepareContainer(domain: Domain, binary: string = SHIM_BINARY): Promise<boolean> {
  const mounts = shimMounts(domain);
  if (mounts === undefined) return false;
  const { shimDir, runDir } = mounts;
  const parent = dirname(shimDir);
  await ensureDir(parent, 0o700);
  const owner = containerRoot(domain);
  const hadRun = await lstat(runDir).then(() => true, () => false);
  await ensureDir(runDir, 0o700);
  if (!hadRun) await chown(runDir, owner.uid, owner.gid);
  if (await lstat(shimDir).then((st) => st.isDirectory(), () => false)) return false;
  const staging = await mkdtemp(join(parent, `.staging-${basename(shimDir)}-`));
  try {
    await copyFile(binary, join(staging, 'init'), constants.COPYFILE_EXCL);
    await writeFile(join(staging, 'spec'), shimSpecOf(domain), 0o400);
    await mkdir(join(staging, 'run'), { mode: 0o755 });
    for (const f of ['init', 'spec', 'run', '.']) await chown(join(staging, f), owner.uid, owner.gid);
    await chmod(join(staging, 'init'), 0o555);
    await chmod(staging, 0o555);
    await syncDirectory(staging);
    await rename(staging, shimDir);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    // another pass made it meanwhile: that one is as good
    if (await lstat(shimDir).then((st) => st.isDirectory(), () => false)) return false;
    throw e;
  }
  await syncDirectory(parent);
  return true;
}

/**
 * run/ and what the shim made there (the status, the log directory and its two files) belong to
 * the container's root. After the idmap changed (a new definition), the old owner's files are out
 * of the new root's reach (no status written, no output kept): they are given to it. The container
 * writes run/, so nothing there is followed: the log directory is held open (O_NOFOLLOW) and its
 * files re-owned beneath that fd, never through a path the container could redirect; only
 * directories and single-link regular files of the old owner are touched.
 */
async function ownRun(runDir: string, owner: { uid: number; gid: number }): Promise<void> {
  const st = await lstat(runDir);
  if (st.uid === owner.uid && st.gid === owner.gid) return;
  const reown = async (path: string) => {
    const s = await lstat(path).catch(() => undefined);
    if (s !== undefined && s.uid === st.uid && (s.isDirectory() || (s.isFile() && s.nlink === 1))) await lchown(path, owner.uid, owner.gid);
  };
  await reown(join(runDir, SHIM_STATUS.slice(SHIM_RUN.length + 1)));
  const log = await LogDir.open(join(runDir, SHIM_LOG.slice(SHIM_RUN.length + 1))).catch(() => undefined);
  if (log !== undefined) {
    try {
      for (const name of ['current', 'previous']) await reown(`${log.fdPath}/${name}`);
      // the held directory itself: its /proc/self/fd link is followed, to it and nowhere else
      if ((await stat(log.fdPath)).uid === st.uid) await chown(log.fdPath, owner.uid, owner.gid);
    } finally {
      await log.close();
    }
  }
  await lchown(runDir, owner.uid, owner.gid);
}

/**
 * Before a start (the container is not running): the directories made again when missing, run/
 * given to the container's root, other versions (and left staging) removed.
 */
export async function prepareForStart(domain: Domain, binary: string = SHIM_BINARY): Promise<void> {
  const mounts = shimMounts(domain);
  if (mounts === undefined) return;
  await prepareContainer(domain, binary);
  await ownRun(mounts.runDir, containerRoot(domain));
  const parent = dirname(mounts.shimDir);
  for (const name of await readdir(parent)) {
    if ((name.startsWith('shim-') || name.startsWith('.staging-')) && name !== basename(mounts.shimDir))
      await rm(join(parent, name), { recursive: true, force: true });
  }
}

/** Everything of an undefined domain (its status and logs included). */
export async function removeContainer(stateDir: string, domain: string): Promise<void> {
  await rm(containerDir(stateDir, domain), { recursive: true, force: true });
}
