/**
 * Image config -> runtime config, per image-spec conversion.md and our mapping notes (section 4).
 * Pure: the caller reads the rootfs's /etc/passwd and /etc/group (inside the root) and hands
 * their text in, so nothing here touches the filesystem.
 *
 * The base is `runc spec`'s default generated config, trimmed to what libvirt-lxc can honour:
 * namespaces pid/mount/ipc/uts/network (libvirt always creates the first four; network gives
 * loopback-only `<privnet/>`), a terminal (libvirt needs a pty console to start), Docker's default
 * capability set (all 14 are in libvirt's list, and setuid/setgid/setpcap must stay for a non-root
 * init, mapping 1.5), the standard kernel filesystems (libvirt provides them) plus /dev/shm, which
 * libvirt does not create. runc's /dev/mqueue, rlimits, masked and read-only paths and
 * noNewPrivileges are left out: libvirt-lxc cannot express them, and including them would only
 * produce refusals or warnings downstream.
 */
import { InputError, shortJson } from '../errors.js';
import type { ExecConfig, ImageConfig } from '../image/documents.js';
import { ANNOTATION_PREFIX, type Mount, type RuntimeConfig } from '../oci/runtime-spec.js';

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's default set: enough for package managers and daemons that drop privileges. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const VOLUMES_ANNOTATION = `${ANNOTATION_PREFIX}image.volumes`;
/** Docker's HEALTHCHECK of the image, as JSON: kept (libvirt-lxc runs no health checks), never dropped silently. */
export const HEALTHCHECK_ANNOTATION = `${ANNOTATION_PREFIX}image.healthcheck`;

/**
 * Bump when the runtime config made from the same image changes: an unpacked bundle records the
 * version that made its config.json, and one made by another is derived again, never reused.
 * 2: image labels in ocivirt's namespace are kept under IMAGE_LABEL_PREFIX (1 made them
 * ocivirt's own annotations: an image chose its domain XML and its start); the image's
 * HEALTHCHECK is kept as HEALTHCHECK_ANNOTATION (1 dropped it).
 */
export const IMAGE_CONVERTER_VERSION = 2;

/**
 * Where image labels in ocivirt's own namespace go: an image from a registry must not choose its
 * domain XML (`org.ocivirt.domain-xml`) or whether it starts (`org.ocivirt.start`).
 */
export const IMAGE_LABEL_PREFIX = 'image-label.';

/** Keys ocivirt reads; case-folded, so no spelling of the prefix slips through a later change. */
export function isOcivirtKey(key: string): boolean {
  return key.toLowerCase().startsWith(ANNOTATION_PREFIX);
}

const DEFAULT_MOUNTS: Mount[] = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  // exactly what libvirt can do for a tmpfs (it always mounts nosuid,nodev; a size is mandatory)
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'nodev', 'size=65536k'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
];

export interface ConvertInput {
  image: ImageConfig;
  /** Text of the rootfs's /etc/passwd and /etc/group (undefined when absent). */
  passwd?: string | undefined;
  group?: string | undefined;
  /** `root.path`; relative to the bundle. */
  rootPath?: string;
  /** The image config's file, for errors. */
  file?: string;
}

export interface ConvertResult {
  config: RuntimeConfig;
  /** Things the operator should know (dropped env entries, volumes not mounted). */
  warnings: string[];
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const ID = /^\d+$/;
const MAX_ID = 0xffffffff - 1; // (uid_t)-1 means "no change" to the kernel

function parseId(text: string): number | undefined {
  if (!ID.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) && n <= MAX_ID ? n : undefined;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || line.startsWith('#')) continue;
    const uid = parseId(f[2] as string);
    const gid = parseId(f[3] as string);
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0] as string, uid, gid, home: f[5] as string });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const gid = parseId(f[2] as string);
    if (gid === undefined) continue;
    out.push({ name: f[0] as string, gid, members: (f[3] as string).split(',').filter((m) => m !== '') });
  }
  return out;
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
  home?: string;
}

/**
 * Config.User -> uid/gid (conversion.md): `user`, `uid`, `user:group`, `uid:gid`, `uid:group`,
 * `user:gid`. Names are looked up in the rootfs's files; an unknown name is an error. With only
 * a user *name*, its supplementary groups come from /etc/group; a numeric user or an explicit
 * group leaves additionalGids alone. A numeric uid found in /etc/passwd still takes its primary
 * group and home from there (as runc and umoci do); one not found gets gid 0.
 */
export function resolveUser(user: string | undefined, passwdText: string | undefined, groupText: string | undefined, file?: string): ResolvedUser {
  const where = { file, field: 'config.User' };
  if (!user) return { uid: 0, gid: 0, home: homeOf(0, passwdText) ?? '/root' };
  const parts = user.split(':');
  if (parts.length > 2 || parts[0] === '') throw new InputError(`malformed user ${JSON.stringify(user)} (expected user[:group])`, where);
  const userPart = parts[0] as string;
  const groupPart = parts[1];
  if (groupPart === '') throw new InputError(`malformed user ${JSON.stringify(user)}: empty group`, where);
  const passwd = passwdText === undefined ? undefined : parsePasswd(passwdText);
  const groups = groupText === undefined ? undefined : parseGroup(groupText);

  let uid = parseId(userPart);
  let entry: PasswdEntry | undefined;
  if (uid === undefined) {
    if (/^\d+$/.test(userPart)) throw new InputError(`uid ${JSON.stringify(userPart)} is out of range`, where);
    if (passwd === undefined) throw new InputError(`user ${JSON.stringify(userPart)} cannot be resolved: the image has no /etc/passwd`, where);
    entry = passwd.find((p) => p.name === userPart);
    if (entry === undefined) throw new InputError(`user ${JSON.stringify(userPart)} is not in the image's /etc/passwd`, where);
    uid = entry.uid;
  } else {
    entry = passwd?.find((p) => p.uid === uid);
  }

  let gid: number;
  if (groupPart === undefined) gid = entry?.gid ?? 0;
  else {
    const numeric = parseId(groupPart);
    if (numeric !== undefined) gid = numeric;
    else {
      if (/^\d+$/.test(groupPart)) throw new InputError(`gid ${JSON.stringify(groupPart)} is out of range`, where);
      if (groups === undefined) throw new InputError(`group ${JSON.stringify(groupPart)} cannot be resolved: the image has no /etc/group`, where);
      const g = groups.find((x) => x.name === groupPart);
      if (g === undefined) throw new InputError(`group ${JSON.stringify(groupPart)} is not in the image's /etc/group`, where);
      gid = g.gid;
    }
  }

  const out: ResolvedUser = { uid, gid };
  if (entry?.home) out.home = entry.home;
  if (groupPart === undefined && parseId(userPart) === undefined && groups !== undefined) {
    const extra = [...new Set(groups.filter((g) => g.members.includes(userPart)).map((g) => g.gid))].filter((g) => g !== gid);
    if (extra.length > 0) out.additionalGids = extra;
  }
  return out;
}

function homeOf(uid: number, passwdText: string | undefined): string | undefined {
  return passwdText === undefined ? undefined : parsePasswd(passwdText).find((p) => p.uid === uid)?.home || undefined;
}

/**
 * Entrypoint + Cmd. An image with neither (a base or data image) still unpacks: its bundle has no
 * process.args, and defining a domain from it is refused at that step (Linux needs argv[0]).
 */
export function imageArgs(exec: ExecConfig): string[] {
  return [...(exec.Entrypoint ?? []), ...(exec.Cmd ?? [])];
}

function env(exec: ExecConfig, home: string | undefined, warnings: string[]): string[] {
  const out: string[] = [];
  const names = new Set<string>();
  for (const [i, e] of (exec.Env ?? []).entries()) {
    const eq = e.indexOf('=');
    if (eq <= 0 || e.includes('\0')) {
      warnings.push(`config.Env[${i}] ${JSON.stringify(e)} is not NAME=value; dropped`);
      continue;
    }
    names.add(e.slice(0, eq));
    out.push(e);
  }
  // spec: we may add variables, never ones the image set; libvirt would otherwise give PATH=/bin:/sbin and HOME=/
  if (!names.has('PATH')) out.push(DEFAULT_PATH);
  if (!names.has('HOME') && home !== undefined && home.startsWith('/')) out.push(`HOME=${home}`);
  return out;
}

function annotations(image: ImageConfig, warnings: string[]): Record<string, string> {
  const a: Record<string, string> = {};
  const exec = image.config;
  const put = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '') a[`org.opencontainers.image.${k}`] = v;
  };
  put('os', image.os);
  put('architecture', image.architecture);
  put('variant', image.variant);
  put('os.version', image.osVersion);
  put('os.features', image.osFeatures?.join(','));
  put('author', image.author);
  put('created', image.created);
  put('exposedPorts', exec.ExposedPorts ? Object.keys(exec.ExposedPorts).join(',') : undefined);
  put('stopSignal', exec.StopSignal);
  const volumes = Object.keys(exec.Volumes ?? {});
  if (volumes.length > 0) {
    a[VOLUMES_ANNOTATION] = volumes.join(',');
    warnings.push(`the image declares volumes (${shortJson(volumes, 200)}): recorded in ${VOLUMES_ANNOTATION}; a spool entry gets a volume at each, a bundle unpacked by hand keeps their data in its rootfs`);
  }
  if (exec.Healthcheck !== undefined) {
    a[HEALTHCHECK_ANNOTATION] = JSON.stringify(exec.Healthcheck);
    const test = exec.Healthcheck.Test;
    if (!(Array.isArray(test) && test[0] === 'NONE'))
      warnings.push(`the image declares a HEALTHCHECK (${shortJson(test ?? null, 200)}): recorded in ${HEALTHCHECK_ANNOTATION}, not run (libvirt-lxc has no health checks)`);
  }
  // labels win over every implicit annotation (conversion.md), but none may speak for ocivirt
  for (const [key, value] of Object.entries(exec.Labels ?? {})) {
    if (!isOcivirtKey(key)) a[key] = value;
    else {
      a[`${IMAGE_LABEL_PREFIX}${key}`] = value;
      warnings.push(`the image label ${JSON.stringify(key)} is in ocivirt's namespace, which only the spool's owner sets: kept as ${JSON.stringify(IMAGE_LABEL_PREFIX + key)}, ignored`);
    }
  }
  return a;
}

export function imageConfigToRuntimeConfig(input: ConvertInput): ConvertResult {
  const { image, file } = input;
  const warnings: string[] = [];
  const exec = image.config;
  if (image.os !== 'linux') throw new InputError(`the image is for ${JSON.stringify(image.os)}; libvirt-lxc runs Linux images only`, { file, field: 'os' });
  const user = resolveUser(exec.User, input.passwd, input.group, file);
  let cwd = exec.WorkingDir || '/';
  if (!cwd.startsWith('/')) {
    warnings.push(`config.WorkingDir ${JSON.stringify(cwd)} is relative; taken from /`);
    cwd = `/${cwd}`;
  }
  const args = imageArgs(exec);
  if (args.length === 0)
    warnings.push('the image has neither Entrypoint nor Cmd: config.json has no process.args, so nothing runs until they are set (the daemon refuses to define a domain from it)');
  const config: RuntimeConfig = {
    ociVersion: '1.2.0',
    process: {
      terminal: true,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids ? { additionalGids: user.additionalGids } : {}) },
      ...(args.length > 0 ? { args } : {}),
      env: env(exec, user.home, warnings),
      cwd,
      // a non-root init loses effective and permitted caps at the uid switch (libvirt and runc
      // alike, without ambient caps), so only root is given them; the bounding set holds for all
      capabilities:
        user.uid === 0
          ? { bounding: [...DEFAULT_CAPABILITIES], effective: [...DEFAULT_CAPABILITIES], permitted: [...DEFAULT_CAPABILITIES] }
          : { bounding: [...DEFAULT_CAPABILITIES] },
    },
    root: { path: input.rootPath ?? 'rootfs' },
    mounts: DEFAULT_MOUNTS.map((m) => ({ ...m, ...(m.options ? { options: [...m.options] } : {}) })),
    annotations: annotations(image, warnings),
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    },
  };
  return { config, warnings };
}
