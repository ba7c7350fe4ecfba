/** What the conversion passes share: options, the warning list, host facts. */
import { InputError } from '../errors.js';
import type { OciMetadata, OwnMount } from '../xml/metadata.js';

/** A host device node as seen by stat(2). */
export interface HostDeviceNode {
  type: 'c' | 'b';
  major: number;
  minor: number;
}

/** Finds an executable inside the rootfs: a bare name via the PATH dirs, a relative path via cwd. */
export type ExecutableResolver = (argv0: string, searchPath: string[], cwd: string) => string | undefined;

export interface FromNativeOptions {
  /** The bundle directory: a relative root.path (and bind source) is made absolute against it. */
  bundleDir: string;
  /** The domain name; default: the hostname when it is a valid name, else the container id, else the bundle dir name. */
  name?: string;
  /** The container id (UUID and MACs derive from it); default: the domain name. */
  id?: string;
  /** Refuse every field that would otherwise be preserved in metadata and warned about, seccomp included. */
  strict?: boolean;
  /** The host's cgroup version; default: detected. */
  cgroupVersion?: 1 | 2;
  /** Ownership written into the metadata for the reconciler. */
  owner?: { entry: string; instance?: string; imageDigest?: string; settingsDigest?: string };
  /** Resolves a non-absolute argv0 inside the rootfs (the CLI passes one over `resolveInRootSync`). */
  resolveExecutable?: ExecutableResolver;
  /** Looks up a host device node; without it, `linux.devices` are preserved, not mapped. */
  hostDevice?: (path: string) => HostDeviceNode | undefined;
  /** Security models the host's libvirt has (`virsh capabilities`); a label needs its model. */
  secModels?: string[];
  /** The host architecture in libvirt's naming; default: this process's. */
  hostArch?: string;
  /** The config file, for error messages. */
  file?: string;
  /**
   * Read-only binds ocivirt adds itself (the generated /etc files, network/etc-files.ts): mounted
   * after the config's mounts, recorded in the metadata, left out by to-native. Never from a config.
   */
  ownMounts?: OwnMount[];
  /**
   * Run the process through ocivirt's init shim from `<stateDir>/containers/<name>`
   * (src/shim/domain.ts): what the shim enforces is no longer a warning. Every domain the daemon,
   * `sync` and `from-native --state` make has it. `logFileBytes`: the cap of each of the shim's
   * two log files (default DEFAULT_LOG_FILE_BYTES); it is part of the desired definition.
   */
  shim?: { stateDir: string; logFileBytes?: number };
}

export interface ToNativeOptions {
  /** Resolves a user or group name of <inituser>/<initgroup> against the rootfs (/etc/passwd, /etc/group). */
  lookupId?: (kind: 'user' | 'group', name: string) => number | undefined;
  /** Looks up a host device node, to give hostdevs their major/minor. */
  hostDevice?: (path: string) => HostDeviceNode | undefined;
  /** The host cgroup version, used when the metadata does not record one; default: detected. */
  cgroupVersion?: 1 | 2;
  hostArch?: string;
}

export interface Warning {
  field: string;
  message: string;
}

export class Warnings {
  readonly list: Warning[] = [];
  add(field: string, message: string): void {
    if (!this.list.some((w) => w.field === field && w.message === message)) this.list.push({ field, message });
  }
  /** True when some warning already speaks of `field` (the same field, a parent or a child of it). */
  covers(field: string): boolean {
    const within = (a: string, b: string) => a === b || a.startsWith(b + '.') || a.startsWith(b + '[');
    return this.list.some((w) => within(field, w.field) || within(w.field, field));
  }
  lines(): string[] {
    return this.list.map((w) => `${w.field}: ${w.message}`);
  }
}

export interface ForwardContext {
  opts: FromNativeOptions;
  id: string;
  cgroupVersion: 1 | 2;
  hostArch: string;
  warnings: Warnings;
}

export interface ReverseContext {
  meta: OciMetadata | undefined;
  id: string;
  cgroupVersion: 1 | 2;
  hostArch: string;
  warnings: Warnings;
  opts: ToNativeOptions;
}

export function refuse(ctx: { opts: { file?: string } }, field: string, reason: string): never {
  throw new InputError(reason, { file: ctx.opts.file, field });
}

/** libvirt's architecture name for this process's, and its 32-bit companion. */
export function libvirtArch(nodeArch: string = process.arch): string {
  return ({ x64: 'x86_64', arm64: 'aarch64', ia32: 'i686', arm: 'armv7l', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[nodeArch] ?? nodeArch;
}

export const ARCH_32BIT_COMPANION: Record<string, string> = { x86_64: 'i686', aarch64: 'armv7l', ppc64le: 'ppc', s390x: 's390' };
