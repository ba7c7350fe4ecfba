/**
 * Capabilities (mapping notes §1.5): libvirt applies one set to effective, permitted,
 * inheritable and bounding alike, and knows 37 names.
 */

/** libvirt's capability names, in the order it formats them. */
export const LIBVIRT_CAPS = [
  'audit_control', 'audit_write', 'block_suspend', 'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid',
  'ipc_lock', 'ipc_owner', 'kill', 'lease', 'linux_immutable', 'mac_admin', 'mac_override', 'mknod', 'net_admin',
  'net_bind_service', 'net_broadcast', 'net_raw', 'setgid', 'setfcap', 'setpcap', 'setuid', 'sys_admin', 'sys_boot',
  'sys_chroot', 'sys_module', 'sys_nice', 'sys_pacct', 'sys_ptrace', 'sys_rawio', 'sys_resource', 'sys_time',
  'sys_tty_config', 'syslog', 'wake_alarm',
] as const;

/** What libvirt's `default` policy drops (lxc_container.c). */
export const DEFAULT_POLICY_DROPS = ['sys_module', 'sys_time', 'mknod', 'audit_control', 'mac_admin'];

/** Kept for a non-root init: libvirt switches uid after dropping capabilities. */
export const NEEDED_FOR_USER_SWITCH = ['setgid', 'setpcap', 'setuid'];

/** `CAP_NET_ADMIN` -> `net_admin` when libvirt knows it. */
export function libvirtCapName(oci: string): string | undefined {
  const n = oci.replace(/^CAP_/i, '').toLowerCase();
  return (LIBVIRT_CAPS as readonly string[]).includes(n) ? n : undefined;
}

export function ociCapName(libvirt: string): string {
  return 'CAP_' + libvirt.toUpperCase();
}

export function sortLibvirtCaps(names: Iterable<string>): string[] {
  const order = LIBVIRT_CAPS as readonly string[];
  return [...new Set(names)].sort((a, b) => order.indexOf(a) - order.indexOf(b));
}

/** The effective set a `<capabilities>` element gives, as libvirt names. */
export function effectiveCaps(policy: string | undefined, caps: { name: string; state: 'on' | 'off' }[]): string[] {
  const on = caps.filter((c) => c.state === 'on').map((c) => c.name);
  const off = new Set(caps.filter((c) => c.state === 'off').map((c) => c.name));
  let base: string[];
  if (policy === 'deny') base = [];
  else if (policy === 'allow') base = [...LIBVIRT_CAPS];
  else base = LIBVIRT_CAPS.filter((c) => !DEFAULT_POLICY_DROPS.includes(c));
  return [...new Set([...base.filter((c) => !off.has(c)), ...on])].sort();
}
