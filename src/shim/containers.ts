/**
 * The per-domain host directories of the init shim (layout in domain.ts): made before a define
 * and again before every start when missing (a crash, or a state directory restored without
 * them: the definition alone says what goes in), old versions collected at start, all of it
 * removed when the domain is undefined. A version directory is staged beside its name and
 * renamed into place, so it is either whole or absent.
 */
import { constants } from 'node:fs';
import { chmod, chown, copyFile, lstat, mkdir, mkdtemp, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toNative } from '../convert/to-native.js';
import { syncDirectory } from '../fsroot/atomic.js';
import type { Domain } from '../xml/domain.js';
import { containerDir, GRANTABLE_CAPS, isShimSysctl, SHIM_STATUS, shimMounts, withoutShim } from './domain.js';
import { encodeShimSpec } from './spec.js';

/** The shim binary `make -C shim` builds (dist/shim/ocivirt-init). */
export const SHIM_BINARY = fileURLToPath(new URL('../../shim/ocivirt-init', import.meta.url));

/**
 * The spec file of a domain that runs through the shim: its process as to-native gives it back,
 * the program as the converter resolved it in the rootfs (what libvirt would have run).
 */
export function shimSpecOf(domain: Domain): Buffer {
  const plain = withoutShim(domain);
  const { config } = toNative(plain);
  if (config.process !== undefined && plain.os.init !== undefined) config.process.args = [plain.os.init, ...(config.process.args ?? []).slice(1)];
  if (config.linux?.sysctl !== undefined) config.linux.sysctl = Object.fromEntries(Object.entries(config.linux.sysctl).filter(([k]) => isShimSysctl(k, config)));
  return encodeShimSpec(config, { statusPath: SHIM_STATUS, capabilities: { grantable: GRANTABLE_CAPS } });
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

/** Before a start: the directories made again when missing, other versions (and left staging) removed. */
export async function prepareForStart(domain: Domain, binary: string = SHIM_BINARY): Promise<void> {
  const mounts = shimMounts(domain);
  if (mounts === undefined) return;
  await prepareContainer(domain, binary);
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
