/**
 * The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, for containers on libvirt
 * networks (settings key `networks`). They are generated per domain in ocivirt's state directory
 * (`<state>/containers/<domain>/etc/`, each replaced atomically) and bind-mounted read-only over
 * the image's files (libvirt-lxc `<filesystem type='mount'>`, recorded as ocivirt's own mounts in
 * the metadata so to-native leaves them out). The image's files are never written: a new image
 * version neither loses nor conflicts with them.
 *
 * - hosts: localhost lines, then each address of the container with its names (the hostname in
 *   force, the config's hostname when it differs, the entry name when it is a DNS label).
 * - hostname: the hostname in force. libvirt-lxc sets the kernel hostname to the domain name (with
 *   every character outside [A-Za-z0-9-] removed) and has no element for another one; the OCI
 *   `hostname`, when it differs, is warned about (convert warning, `names.hostname` event) and
 *   listed in /etc/hosts. `KERNEL_HOSTNAME_BY_SHIM` is the hook for the init shim (issue 12): once it
 *   sets the hostname itself, the config's hostname is the one in force.
 * - resolv.conf: each network's own address (libvirt's dnsmasq) as nameserver, its `<domain name>`
 *   as search domain.
 *
 * Where the rootfs cannot take a file mount the file is left out with a warning: no /etc in a
 * read-only root, an /etc/X that is not a regular file (a directory, a device), a read-only root
 * without that file (libvirt could not create the mount point). A rootfs without /etc and a
 * writable root gets the generated directory mounted at /etc instead. A config mount at /etc or at
 * the file itself wins: nothing is generated there. Targets that lead out of the container
 * (a symlink into /.oldroot, libvirt's view of the host while it mounts) are refused by the
 * start checks (spool/preflight.ts), as for every mount.
 */
import { mkdir, readFile, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { resolveInRoot } from '../fsroot/index.js';
import { hostnameForDomainName } from '../convert/identity.js';
import type { OwnMount } from '../xml/metadata.js';

export const ETC_FILES = ['hosts', 'hostname', 'resolv.conf'] as const;
export type EtcFile = (typeof ETC_FILES)[number];

/**
 * The init shim does not set the kernel hostname yet (issue 12): libvirt's (the domain name) is in
 * force. When it does, make this true and pass the config's hostname to the shim.
 */
export const KERNEL_HOSTNAME_BY_SHIM = false;

/** One DNS label (RFC 1123): letters, digits and '-', not at either end, 1 to 63 characters. */
export const DNS_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** A hostname: dot-separated labels, at most 253 characters. */
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export function isDnsLabel(s: string): boolean {
  return DNS_LABEL.test(s);
}

/** The container's side of one network attachment, as the files need it. */
export interface EtcAttachment {
  network: string;
  /** `A.B.C.D/P` */
  ip: string;
  /** The network's own address: its dnsmasq. */
  gateway: string;
  /** The network's `<domain name=…>`. */
  dnsDomain?: string;
  /** False when the network says `<dns enable='no'>`: no nameserver there. */
  dns?: boolean;
}

export interface EtcInput {
  domainName: string;
  /** The spool entry's stem (`web-1` of `web-1.tar`): a name too when it is a DNS label. */
  entryStem?: string;
  /** The config's `hostname`. */
  hostname?: string;
  attachments: readonly EtcAttachment[];
}

/** The hostname the kernel has in the container (see KERNEL_HOSTNAME_BY_SHIM). */
export function hostnameInForce(domainName: string, configHostname: string | undefined): string {
  return KERNEL_HOSTNAME_BY_SHIM && configHostname !== undefined ? configHostname : hostnameForDomainName(domainName);
}

/** The names a container answers to on its own addresses, in /etc/hosts order, without repeats. */
export function ownNames(input: Pick<EtcInput, 'domainName' | 'entryStem' | 'hostname'>): string[] {
  const names = [hostnameInForce(input.domainName, input.hostname)];
  if (input.hostname !== undefined && HOSTNAME.test(input.hostname)) names.push(input.hostname);
  if (isDnsLabel(input.domainName)) names.push(input.domainName);
  if (input.entryStem !== undefined && isDnsLabel(input.entryStem)) names.push(input.entryStem.toLowerCase());
  return [...new Set(names.filter((n) => n !== ''))];
}

/** The three files' contents. */
export function etcContents(input: EtcInput): Record<EtcFile, string> {
  const names = ownNames(input).join(' ');
  const hosts = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  for (const a of input.attachments) hosts.push(`${a.ip.split('/')[0]}\t${names}`);
  const servers = [...new Set(input.attachments.filter((a) => a.dns !== false).map((a) => a.gateway))].slice(0, 3); // resolv.conf takes three
  const search = [...new Set(input.attachments.flatMap((a) => (a.dnsDomain !== undefined && HOSTNAME.test(a.dnsDomain) ? [a.dnsDomain] : [])))];
  const resolv = [...(search.length ? [`search ${search.join(' ')}`] : []), ...servers.map((s) => `nameserver ${s}`)];
  return {
    hosts: `# generated by ocivirt for domain ${input.domainName}\n${hosts.join('\n')}\n`,
    hostname: `${hostnameInForce(input.domainName, input.hostname)}\n`,
    'resolv.conf': `# generated by ocivirt for domain ${input.domainName}\n${resolv.join('\n')}\n`,
  };
}

/** `<state>/containers/<domain>/etc`: the generated files of one domain. */
export function etcDirOf(stateDir: string, domainName: string): string {
  return join(stateDir, 'containers', domainName, 'etc');
}

export interface EtcPlan {
  mounts: OwnMount[];
  warnings: string[];
}

/**
 * Which binds the rootfs can take (see the module comment). `rootfsAt`: the rootfs on the host;
 * `taken`: the config's mount destinations.
 */
export async function planEtcMounts(rootfsAt: string, readonlyRoot: boolean, etcDir: string, taken: readonly string[]): Promise<EtcPlan> {
  const warnings: string[] = [];
  if (taken.includes('/etc')) return { mounts: [], warnings };
  const kind = async (path: string) => {
    try {
      const st = await lstat(await resolveInRoot(rootfsAt, path));
      return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
    } catch {
      return 'missing'; // absent, or a link loop (libvirt would fail on it as well)
    }
  };
  const etc = await kind('/etc');
  if (etc === 'missing') {
    if (!readonlyRoot) return { mounts: [{ source: etcDir, target: '/etc' }], warnings };
    return { mounts: [], warnings: ['the read-only rootfs has no /etc: no generated /etc/hosts, /etc/hostname or /etc/resolv.conf'] };
  }
  if (etc !== 'dir') return { mounts: [], warnings: ['/etc in the rootfs is not a directory: no generated /etc/hosts, /etc/hostname or /etc/resolv.conf'] };
  const mounts: OwnMount[] = [];
  for (const f of ETC_FILES) {
    const target = `/etc/${f}`;
    if (taken.includes(target)) continue;
    const k = await kind(target);
    if (k === 'file' || (k === 'missing' && !readonlyRoot)) mounts.push({ source: join(etcDir, f), target });
    else if (k === 'missing') warnings.push(`the read-only rootfs has no ${target} to mount the generated one over: the container has none`);
    else warnings.push(`${target} in the rootfs is not a regular file: the generated one is not mounted, the image's is used`);
  }
  return { mounts, warnings };
}

/** Writes the files whose content changed (each replaced atomically); returns the directory. */
export async function writeEtcFiles(etcDir: string, contents: Record<EtcFile, string>): Promise<void> {
  await mkdir(etcDir, { recursive: true, mode: 0o755 });
  for (const f of ETC_FILES) {
    const path = join(etcDir, f);
    if ((await readFile(path, 'utf8').catch(() => undefined)) === contents[f]) continue;
    await writeFileAtomically(path, contents[f], 0o644);
  }
}
