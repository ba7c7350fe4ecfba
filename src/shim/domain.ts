/**
 * The init shim in a domain (shim/README.md): every domain ocivirt defines runs
 * `/.ocivirt/init /.ocivirt/spec` as its `<init>`, from a per-domain host directory
 *
 *   <stateDir>/containers/<domain>/shim-<16 hex of the desired digest>/   read-only at /.ocivirt
 *       init  (a copy of dist/shim/ocivirt-init: a rebuilt shim never changes a defined domain)
 *       spec  (src/shim/spec.ts)
 *       run/  (empty: the mount point of the next one)
 *   <stateDir>/containers/<domain>/run/                                    writable at /.ocivirt/run
 *       status (written by the shim: running, exited N, signaled N, setup-failed)
 *       log/   (written by the shim: the process's stdout/stderr, `current` and `previous`, docs/logs.md)
 *
 * `withShim` turns the converter's domain into that one and keeps what it replaced (the `<os>`
 * init settings and `<capabilities>`) in the metadata; `withoutShim` gives the converter's domain
 * back, so to-native returns the original process. The spec is derived from the domain itself
 * (`shimSpecOf`), so the directory can be made again from the definition alone (containers.ts):
 * the cap of the log files (the daemon's logFileBytes) travels in the definition too, as the
 * `logFileBytes` attribute of the metadata's shim element.
 */
import { createHash } from 'node:crypto';
import { encodeShimSpec } from './spec.js';
import { join, posix } from 'node:path';
import type { Domain, Features, Filesystem, Os } from '../xml/domain.js';
import { LIBVIRT_CAPS, libvirtCapName, ociCapName, sortLibvirtCaps } from '../convert/passes/capabilities.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';

/** Where the shim directory is mounted inside the container. */
export const SHIM_MOUNT = '/.ocivirt';
export const SHIM_INIT = `${SHIM_MOUNT}/init`;
export const SHIM_SPEC = `${SHIM_MOUNT}/spec`;
export const SHIM_RUN = `${SHIM_MOUNT}/run`;
export const SHIM_STATUS = `${SHIM_RUN}/status`;
export const SHIM_LOG = `${SHIM_RUN}/log`;
/** The cap of each log file when none is given (the daemon setting logFileBytes' default). */
export const DEFAULT_LOG_FILE_BYTES = 8 * 1024 * 1024;

/** The host directory of a domain's shim files: `<stateDir>/containers/<domain>`. */
export function containerDir(stateDir: string, domain: string): string {
  return join(stateDir, 'containers', domain);
}

/**
 * What the shim needs to be given by libvirt and gives up itself before the process runs:
 * setuid/setgid for the user switch, setpcap to drop the bounding set, sys_admin to load a
 * seccomp filter without no_new_privs. Not sys_resource (raising a hard rlimit above the one
 * libvirt gives, lowering oom_score_adj): libvirt fails the start when the host's own bounding
 * set lacks a capability the domain lists, and sandboxed hosts often lack that one; a config
 * that needs it lists CAP_SYS_RESOURCE itself, otherwise the shim's step fails (setup-failed).
 */
export const SHIM_CAPS = ['setgid', 'setuid', 'setpcap', 'sys_admin'];

/**
 * Whether the shim sets a sysctl: libvirt-lxc mounts /proc/sys read-only but for net/, and those
 * are the container's own only in its own network namespace (otherwise they are the host's).
 * The others stay a warning and are not passed to the shim.
 */
export function isShimSysctl(key: string, config: RuntimeConfig): boolean {
  const net = config.linux?.namespaces?.find((n) => n.type === 'network');
  return /^net[./]/.test(key) && net !== undefined && net.path === undefined;
}

/** Capabilities the shim can hand to the process: the ones libvirt can grant it. */
export const GRANTABLE_CAPS: ReadonlySet<string> = new Set(LIBVIRT_CAPS.map(ociCapName));

interface SavedInit {
  os: Pick<Os, 'init' | 'initargs' | 'initenv' | 'initdir' | 'inituser' | 'initgroup'>;
  capabilities?: Features['capabilities'];
}

/** `shim-<16 hex>`: one directory per desired definition. */
export function shimVersion(desiredDigest: string): string {
  return `shim-${desiredDigest.replace(/^sha256:/, '').slice(0, 16)}`;
}

/**
 * The converter's domain `d` (made from `config`) made to run through the shim from `hostDir`
 * (containerDir), its output kept in files of at most `logFileBytes`. The libvirt capability set
 * becomes every capability the config asks for in any set, plus SHIM_CAPS; the shim sets the
 * five sets exactly.
 */
export function withShim(d: Domain, config: RuntimeConfig, hostDir: string, logFileBytes: number = DEFAULT_LOG_FILE_BYTES): void {
  const meta = d.metadata.ours!;
  meta.logFileBytes = logFileBytes;
  const { init, initargs, initenv, initdir, inituser, initgroup } = d.os;
  const saved: SavedInit = {
    os: { init, initargs, initenv, ...(initdir !== undefined ? { initdir } : {}), ...(inituser !== undefined ? { inituser } : {}), ...(initgroup !== undefined ? { initgroup } : {}) },
    ...(d.features.capabilities !== undefined ? { capabilities: d.features.capabilities } : {}),
  };
  meta.shim = saved as unknown as Record<string, unknown>;
  d.os = { ...d.os, init: SHIM_INIT, initargs: [SHIM_SPEC], initenv: [] };
  delete d.os.initdir;
  delete d.os.inituser;
  delete d.os.initgroup;
  const caps = config.process?.capabilities ?? {};
  const wanted = [caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient]
    .flatMap((l) => l ?? [])
    .map(libvirtCapName)
    .filter((n): n is string => n !== undefined);
  d.features.capabilities = { policy: 'deny', caps: sortLibvirtCaps([...wanted, ...SHIM_CAPS]).map((name) => ({ name, state: 'on' as const })) };
  const mount = (source: string, target: string, readonly: boolean): Filesystem => ({ type: 'mount', source: { dir: source }, target, readonly, attrs: {}, extra: [] });
  d.devices.filesystems.push(
    // named after what the shim gets (not the whole definition): a memory change keeps it, a process change does not
    mount(join(hostDir, shimVersion(createHash('sha256').update(encodeShimSpec(config, { capabilities: { grantable: GRANTABLE_CAPS }, log: shimLog(logFileBytes) })).update(`\0${init ?? ''}`).digest('hex'))), SHIM_MOUNT, true),
    mount(join(hostDir, 'run'), SHIM_RUN, false),
  );
}

const shimLog = (fileBytes: number) => ({ dir: SHIM_LOG, fileBytes });

/** Where the shim of `d` keeps the output and its cap (undefined: a definition made before capture). */
export function shimLogOf(d: Domain): { dir: string; fileBytes: number } | undefined {
  const fileBytes = d.metadata.ours?.logFileBytes;
  return fileBytes === undefined ? undefined : shimLog(fileBytes);
}

/** The shim's two filesystems of `d`, when it runs through the shim. */
export function shimMounts(d: Domain): { shimDir: string; runDir: string } | undefined {
  if (d.metadata.ours?.shim === undefined || d.os.init !== SHIM_INIT) return undefined;
  const at = (target: string) => d.devices.filesystems.find((fs) => fs.type === 'mount' && fs.target === target)?.source.dir;
  const shimDir = at(SHIM_MOUNT);
  const runDir = at(SHIM_RUN);
  if (shimDir === undefined || runDir === undefined || posix.dirname(shimDir) !== posix.dirname(runDir)) return undefined;
  return { shimDir, runDir };
}

/** The converter's domain back from one running through the shim (a copy); any other domain as it is. */
export function withoutShim(d: Domain): Domain {
  if (shimMounts(d) === undefined) return d;
  const plain = structuredClone(d);
  const saved = plain.metadata.ours!.shim as unknown as SavedInit;
  delete plain.metadata.ours!.shim;
  delete plain.metadata.ours!.logFileBytes;
  plain.os = { ...plain.os, ...structuredClone(saved.os) };
  if (saved.capabilities !== undefined) plain.features.capabilities = saved.capabilities;
  else delete plain.features.capabilities;
  plain.devices.filesystems = plain.devices.filesystems.filter((fs) => !(fs.type === 'mount' && (fs.target === SHIM_MOUNT || fs.target === SHIM_RUN)));
  return plain;
}

/** The program the shim runs (the converter's `<init>`), for checks against the rootfs. */
export function shimmedProgram(d: Domain): string | undefined {
  return shimMounts(d) === undefined ? undefined : (d.metadata.ours!.shim as unknown as SavedInit).os.init;
}
