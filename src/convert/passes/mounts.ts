/** `root` and `mounts` <-> `<filesystem>` devices (mapping notes §1.1, §1.2). */
import { posix } from 'node:path';
import type { Mount } from '../../oci/runtime-spec.js';
import type { Domain, Filesystem } from '../../xml/domain.js';
import type { OwnMount } from '../../xml/metadata.js';
import { xmlTextProblem } from '../../xml/escape.js';
import { usageKiB } from '../../xml/parse.js';
import { refuse, type ForwardContext } from '../context.js';
import type { Pass } from './pass.js';

/** Mount points libvirt always sets up itself; OCI mounts there are dropped (and kept in metadata). */
export const LIBVIRT_PROVIDED = ['/proc', '/proc/sys', '/sys', '/sys/kernel/security', '/sys/fs/selinux', '/sys/fs/cgroup', '/dev', '/dev/pts'];

/** The mounts libvirt provides, as a runtime config lists them (to-native of a hand-written domain). */
export const STANDARD_MOUNTS: Mount[] = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
];

/** A tmpfs without `size=` gets 64 MiB: libvirt requires a usage. */
export const DEFAULT_TMPFS_KIB = 65536;

/** Filesystem types a block device source may carry (libvirt detects the type itself). */
const BLOCK_FS_TYPES = ['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'vfat', 'iso9660', 'squashfs', 'auto'];

const BIND_OPTIONS = ['bind', 'rbind', 'ro', 'rw'];
const TMPFS_OPTIONS = ['nosuid', 'nodev', 'rw'];

function checkPath(ctx: ForwardContext, field: string, s: string): void {
  const problem = xmlTextProblem(s);
  if (problem) refuse(ctx, field, `${problem}; libvirt cannot carry it unchanged`);
}

/** `size=` of a tmpfs in KiB (rounded up), undefined when absent; refuses what libvirt cannot take. */
function tmpfsSizeKiB(options: string[], ctx: ForwardContext, field: string): number | undefined {
  const opt = [...options].reverse().find((o) => o.startsWith('size='));
  if (opt === undefined) return undefined;
  const m = /^size=(\d+)([kmgtKMGT]?)$/.exec(opt);
  if (!m) refuse(ctx, field, `'${opt}' is not a size libvirt can express (a percentage or unknown unit)`);
  const mult = { '': 1n, k: 1024n, m: 1024n ** 2n, g: 1024n ** 3n, t: 1024n ** 4n }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const kib = (BigInt(m[1]!) * mult + 1023n) / 1024n;
  if (kib === 0n || kib > BigInt(Number.MAX_SAFE_INTEGER)) refuse(ctx, field, `'${opt}' is out of range`);
  return Number(kib);
}

function mountForward(m: Mount, i: number, ctx: ForwardContext): Filesystem | undefined {
  const field = `mounts[${i}]`;
  const w = ctx.warnings;
  if (!m.destination.startsWith('/')) refuse(ctx, `${field}.destination`, 'must be an absolute path');
  checkPath(ctx, `${field}.destination`, m.destination);
  if (m.source !== undefined) checkPath(ctx, `${field}.source`, m.source);
  if (m.uidMappings || m.gidMappings) refuse(ctx, `${field}.uidMappings`, 'idmapped mounts cannot be expressed in libvirt-lxc');
  const dest = posix.normalize(m.destination).replace(/(.)\/+$/, '$1');
  const options = m.options ?? [];
  if (dest === '/') refuse(ctx, `${field}.destination`, "a mount over '/' conflicts with the root filesystem");
  if (LIBVIRT_PROVIDED.includes(dest)) return undefined; // libvirt sets these up itself
  if (dest === '/dev/mqueue') {
    w.add(field, 'libvirt-lxc does not mount /dev/mqueue; dropped');
    return undefined;
  }
  const isBind = m.type === 'bind' || ((m.type === undefined || m.type === 'none') && options.some((o) => o === 'bind' || o === 'rbind'));
  const readonly = options.includes('ro');
  if (isBind) {
    if (m.source === undefined || m.source === '') refuse(ctx, `${field}.source`, 'a bind mount needs a source');
    if (options.includes('rbind')) w.add(field, 'rbind becomes a plain bind mount: submounts of the source are not visible');
    const other = options.filter((o) => !BIND_OPTIONS.includes(o));
    if (other.length) w.add(`${field}.options`, `${other.join(',')} cannot be expressed by libvirt-lxc`);
    const source = posix.resolve(ctx.opts.bundleDir, m.source);
    return { type: 'mount', source: { dir: source }, target: dest, readonly, attrs: {}, extra: [] };
  }
  if (m.type === 'tmpfs') {
    let kib = tmpfsSizeKiB(options, ctx, `${field}.options`);
    if (kib === undefined) {
      kib = DEFAULT_TMPFS_KIB;
      w.add(field, `a tmpfs needs a size under libvirt-lxc; ${DEFAULT_TMPFS_KIB} KiB is used`);
    }
    const other = options.filter((o) => !o.startsWith('size=') && !TMPFS_OPTIONS.includes(o));
    if (other.length) w.add(`${field}.options`, `${other.join(',')} cannot be expressed by libvirt-lxc (it mounts with nosuid,nodev)`);
    return { type: 'ram', source: { usage: String(kib), units: 'KiB' }, target: dest, readonly: false, attrs: {}, extra: [] };
  }
  if (m.source?.startsWith('/dev/') && (m.type === undefined || BLOCK_FS_TYPES.includes(m.type))) {
    const other = options.filter((o) => o !== 'ro' && o !== 'rw');
    if (other.length) w.add(`${field}.options`, `${other.join(',')} cannot be expressed by libvirt-lxc`);
    if (m.type !== undefined && m.type !== 'auto') w.add(`${field}.type`, 'libvirt detects the filesystem type of a block device itself');
    return { type: 'block', source: { dev: m.source }, target: dest, readonly, attrs: {}, extra: [] };
  }
  refuse(ctx, `${field}.type`, `a '${m.type ?? '(none)'}' mount cannot be expressed in libvirt-lxc`);
}

export const mountsPass: Pass = {
  name: 'mounts',
  forward(cfg, d, ctx) {
    const root = cfg.root;
    if (!root?.path) refuse(ctx, 'root.path', 'is required: libvirt-lxc needs a root filesystem');
    checkPath(ctx, 'root.path', root.path);
    d.devices.filesystems.push({
      type: 'mount',
      source: { dir: posix.resolve(ctx.opts.bundleDir, root.path) },
      target: '/',
      readonly: root.readonly === true,
      attrs: {},
      extra: [],
    });
    (cfg.mounts ?? []).forEach((m, i) => {
      const fs = mountForward(m, i, ctx);
      if (fs) d.devices.filesystems.push(fs);
    });
    // ocivirt's own binds come last (the generated /etc files: none where the config mounts something itself)
    for (const o of ctx.opts.ownMounts ?? []) d.devices.filesystems.push({ type: 'mount', source: { dir: o.source }, target: o.target, readonly: true, attrs: {}, extra: [] });
  },

  reverse(d, ctx) {
    const out: Record<string, unknown> = {};
    const mounts: Mount[] = STANDARD_MOUNTS.map((m) => structuredClone(m));
    const root = rootFilesystem(d);
    out.root = root ? (root.readonly ? { path: root.source.dir, readonly: true } : { path: root.source.dir }) : { path: '/' };
    for (const fs of d.devices.filesystems) {
      if (fs === root || !isMountLike(fs, root) || isOwnMount(fs, ctx.meta?.ownMounts)) continue;
      const options = fs.readonly ? ['bind', 'ro'] : ['bind'];
      if (fs.type === 'mount') mounts.push({ destination: fs.target!, type: 'bind', source: fs.source.dir!, options });
      else if (fs.type === 'bind') {
        // a directory of the container's own root: the same place seen from the host
        const source = posix.join(root!.source.dir!, posix.resolve('/', fs.source.dir!));
        mounts.push({ destination: fs.target!, type: 'bind', source, options });
        ctx.warnings.add('mounts', `the bind of ${fs.source.dir} inside the container becomes ${source} on the host (symlinks in the rootfs are not followed)`);
      } else if (fs.type === 'ram')
        mounts.push({ destination: fs.target!, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', `size=${usageKiB(fs.source) ?? 0}k`] });
      else if (fs.type === 'block') mounts.push({ destination: fs.target!, source: fs.source.dev!, ...(fs.readonly ? { options: ['ro'] } : {}) });
    }
    out.mounts = mounts;
    return out;
  },
};

/** One of ocivirt's own binds as the metadata records it (unchanged since): not the config's. */
export function isOwnMount(fs: Filesystem, own: readonly OwnMount[] | undefined): boolean {
  return fs.type === 'mount' && fs.readonly && own?.some((o) => o.source === fs.source.dir && o.target === fs.target) === true;
}

/** The filesystem mounted at '/' (the first one), if it is a host directory. */
export function rootFilesystem(d: Domain): Filesystem | undefined {
  const fs = d.devices.filesystems.find((f) => f.target === '/');
  return fs && fs.type === 'mount' && isMountLike(fs, undefined) ? fs : undefined;
}

/** Filesystems that map to `root`/`mounts`; the others travel as XML-only parts. */
export function isMountLike(fs: Filesystem, root: Filesystem | undefined): boolean {
  if (fs.target === undefined || Object.keys(fs.attrs).length || fs.extra.length) return false;
  if (fs.accessmode !== undefined && fs.accessmode !== 'passthrough') return false;
  const src = Object.keys(fs.source).sort().join();
  if (fs.type === 'mount') return src === 'dir';
  if (fs.type === 'bind') return src === 'dir' && root !== undefined;
  if (fs.type === 'ram') return !fs.readonly && usageKiB(fs.source) !== undefined && (src === 'usage' || src === 'units,usage');
  if (fs.type === 'block') return src === 'dev';
  return false;
}
