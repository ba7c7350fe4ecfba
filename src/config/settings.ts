/**
 * Every daemon setting in one table: its default, its environment variable, how it is checked
 * and what it means. The loader, the defaults file (config/ocivirt.json) and the documentation
 * (docs/configuration.md) all follow this table, so they cannot drift apart.
 */
import { RESTART } from '../settings/keys.js';

export type StartPolicy = 'never' | 'always' | 'annotation';
export type UpdatePolicy = 'live' | 'next-start' | 'restart';
export type RemovePolicy = 'undefine' | 'keep';
export type DriftPolicy = 'keep' | 'revert';
/** Host device nodes and network interfaces a config may pass through (linux.devices, linux.netDevices). */
export interface HostDeviceAllowList {
  devices: string[];
  netDevices: string[];
}
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface UnpackLimits {
  /** Uncompressed bytes per layer. */
  maxBytes: number;
  /** Tar entries per layer. */
  maxEntries: number;
  /** A layer inflating more than this many times its compressed size is a bomb (0: no limit). */
  maxRatio: number;
  /** Free bytes the state filesystem keeps while a layer is written. */
  minFreeBytes: number;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = { maxBytes: 32 * 1024 ** 3, maxEntries: 1_000_000, maxRatio: 1000, minFreeBytes: 1024 ** 3 };

export interface Config {
  spoolDir: string;
  stateDir: string;
  exportDir: string;
  uri: string;
  namePrefix: string;
  startPolicy: StartPolicy;
  updatePolicy: UpdatePolicy;
  removePolicy: RemovePolicy;
  driftPolicy: DriftPolicy;
  concurrency: number;
  quietMs: number;
  resyncIntervalSec: number;
  exportAllDomains: boolean;
  exportCheckIntervalSec: number;
  definitionsDir: string;
  bindAllowList: string[];
  hostDeviceAllowList: HostDeviceAllowList;
  defaultNetwork: string;
  bridgeAllowList: string[];
  allowInsecureDirs: boolean;
  strictConversion: boolean;
  unpackLimits: UnpackLimits;
  allowDevices: boolean;
  stopTimeoutSec: number;
  stepTimeoutSec: number;
  shutdownTimeoutSec: number;
  logLevel: LogLevel;
  /** Container output (issue 12): bytes of each of a container's two log files. */
  logFileBytes: number;
  /** Container output forwarded to journald. */
  logsToJournal: boolean;
  /** Restart policies (issue 12): the default policy and its backoff. */
  restartPolicy: string;
  restartDelayMs: number;
  restartMaxDelaySec: number;
  crashLoopRestarts: number;
}

export type Kind =
  | { type: 'path' }
  | { type: 'string'; pattern?: RegExp; patternText?: string }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'paths' }
  | { type: 'devices' }
  | { type: 'names'; pattern: RegExp; patternText: string }
  | { type: 'limits' };

export interface Setting<K extends keyof Config = keyof Config> {
  key: K;
  kind: Kind;
  default: Config[K];
  /** OCIVIRT_* variable; undefined for settings only the file can set. */
  env?: string;
  doc: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SETTINGS: readonly Setting[] = [
  { key: 'spoolDir', kind: { type: 'path' }, default: '/var/lib/ocivirt/spool', env: 'OCIVIRT_SPOOL',
    doc: 'The spool: bundle directories, image layouts, image archives (`.tar`, `.tar.gz`, `.tgz`, `.oci`, `.oci.tar`) and settings files (`NAME.ocivirt.json`, docs/entry-settings.md) to run. Only read, never written.' },
  { key: 'stateDir', kind: { type: 'path' }, default: '/var/lib/ocivirt/state', env: 'OCIVIRT_STATE',
    doc: 'Unpacked images (rootfs), the status file. Written owner-only.' },
  { key: 'exportDir', kind: { type: 'path' }, default: '/var/lib/ocivirt/export', env: 'OCIVIRT_EXPORT',
    doc: 'Where `<domain>/config.json` is written when a domain changes in libvirt (config only, its `root.path` the domain\'s absolute rootfs: `ocivirt export --rootfs` makes a bundle a spool takes back). Must not be inside the spool.' },
  { key: 'uri', kind: { type: 'string', pattern: /^lxc(\+[a-z]+)?:\/\/[^\s]*$/, patternText: 'an lxc URI such as lxc:///' }, default: 'lxc:///', env: 'OCIVIRT_URI',
    doc: 'libvirt connection URI.' },
  { key: 'namePrefix', kind: { type: 'string', pattern: /^([a-z0-9][a-z0-9-]{0,31})?$/, patternText: "empty, or up to 32 of a-z, 0-9 and '-' not starting with '-'" },
    default: '', env: 'OCIVIRT_NAME_PREFIX', doc: 'Prepended to every domain name made from a spool entry name.' },
  { key: 'startPolicy', kind: { type: 'enum', values: ['never', 'always', 'annotation'] }, default: 'always', env: 'OCIVIRT_START_POLICY',
    doc: '`always` (default): start every new domain unless its config has the annotation `org.ocivirt.start: "false"`; `annotation`: start only when the config has `org.ocivirt.start: "true"`; `never`. A domain left stopped says why in `ocivirt status`.' },
  { key: 'updatePolicy', kind: { type: 'enum', values: ['live', 'next-start', 'restart'] }, default: 'live', env: 'OCIVIRT_UPDATE_POLICY',
    doc: 'A changed entry whose domain is running: `live` redefines it and applies memory, CPU and blkio changes to the running container at once (`domain.updated`), the rest at its next start; `next-start` redefines and logs `domain.pending`; `restart` stops it gracefully and starts it again. An entry\'s settings `updatePolicy` wins.' },
  { key: 'removePolicy', kind: { type: 'enum', values: ['undefine', 'keep'] }, default: 'undefine', env: 'OCIVIRT_REMOVE_POLICY',
    doc: 'An entry removed from the spool: `undefine` stops then undefines its domain; `keep` leaves it.' },
  { key: 'driftPolicy', kind: { type: 'enum', values: ['keep', 'revert'] }, default: 'keep', env: 'OCIVIRT_DRIFT_POLICY',
    doc: 'A managed domain changed in libvirt by hand (`virsh edit`, `memtune --config`) while its entry did not change: `keep` leaves the edit (logs `domain.drifted` once per change; it is exported back to OCI); `revert` redefines it from the spool. A changed entry always wins over a hand edit.' },
  { key: 'concurrency', kind: { type: 'int', min: 1, max: 256 }, default: 4, env: 'OCIVIRT_CONCURRENCY',
    doc: 'Entries worked on at once (each domain is always handled by one worker at a time).' },
  { key: 'quietMs', kind: { type: 'int', min: 0, max: 3_600_000 }, default: 2000, env: 'OCIVIRT_QUIET_MS',
    doc: 'An entry copied in place is taken once none of its files changed size or mtime for this long. Entries renamed in whole are taken at once.' },
  { key: 'resyncIntervalSec', kind: { type: 'int', min: 10, max: 86_400 }, default: 300, env: 'OCIVIRT_RESYNC_INTERVAL_SEC',
    doc: 'Full resync of the spool against libvirt (also run at start), catching anything the watcher missed.' },
  { key: 'exportAllDomains', kind: { type: 'bool' }, default: false, env: 'OCIVIRT_EXPORT_ALL',
    doc: 'Export every libvirt-lxc domain, not only those ocivirt manages: turns existing containers into OCI bundles.' },
  { key: 'exportCheckIntervalSec', kind: { type: 'int', min: 10, max: 86_400 }, default: 600, env: 'OCIVIRT_EXPORT_CHECK_INTERVAL_SEC',
    doc: 'Full comparison of every exported domain with libvirt, the safety net behind the definitions watcher.' },
  { key: 'definitionsDir', kind: { type: 'path' }, default: '/etc/libvirt/lxc', env: 'OCIVIRT_DEFINITIONS_DIR',
    doc: "Where libvirt keeps persistent LXC definitions (lxc:/// driver). Only watched as a hint that something changed; the XML is always read through libvirt's API." },
  { key: 'bindAllowList', kind: { type: 'paths' }, default: [],
    doc: 'Host directories bind mounts may take their source from (besides the bundle itself). Empty: none.' },
  { key: 'hostDeviceAllowList', kind: { type: 'devices' }, default: { devices: [], netDevices: [] },
    doc: 'Host device nodes (`devices`: paths such as `/dev/fuse`, from linux.devices) and network interfaces (`netDevices`: names, from linux.netDevices) a config may pass through to its container. An entry asking for any other is refused. Empty: none (FIFOs, which are created in the container, always pass).' },
  { key: 'defaultNetwork', kind: { type: 'string', pattern: /^([A-Za-z0-9_][A-Za-z0-9_.:-]{0,63})?$/, patternText: 'empty, or a libvirt network name' }, default: '', env: 'OCIVIRT_DEFAULT_NETWORK',
    doc: 'A libvirt network every container is attached to when its settings file has no `networks` key (an address allocated as for `"networks": ["NAME"]`, docs/entry-settings.md); `"networks": []` opts an entry out. Containers that share the host\'s network namespace are left as they are. Empty (default): none, a container without `networks` has a loopback-only private network. A change redefines those entries (in force at their next start). Only this setting and the settings files choose networks: a bundle\'s own `org.ocivirt.networks` annotation is not acted on.' },
  { key: 'bridgeAllowList', kind: { type: 'names', pattern: /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/, patternText: 'a bridge name (1 to 15 of A-Z a-z 0-9 _ . -)' }, default: [],
    doc: 'Host bridges (e.g. `br0`, on the host\'s LAN) a settings file\'s `networks` may attach a container to with `{ "bridge": NAME }`. Any other is refused, as a bind source outside `bindAllowList` is. Empty: none.' },
  { key: 'allowInsecureDirs', kind: { type: 'bool' }, default: false, env: 'OCIVIRT_ALLOW_INSECURE_DIRS',
    doc: 'Start even when spool, state or export can be written by group or others (logged as a warning at every start). Whoever can write the spool can run containers as root.' },
  { key: 'strictConversion', kind: { type: 'bool' }, default: false, env: 'OCIVIRT_STRICT',
    doc: 'Refuse an entry whose config has fields libvirt-lxc would not enforce (seccomp, rlimits …) instead of keeping them in metadata with a warning.' },
  { key: 'unpackLimits', kind: { type: 'limits' }, default: DEFAULT_UNPACK_LIMITS,
    doc: 'Per layer: `maxBytes` uncompressed and `maxEntries` tar entries; `maxRatio`: refused once it inflates more than this many times its compressed size, checked after its first 64 MiB (0: no limit; ordinary layers are 2-10:1, zeros in gzip ~1030:1, so only bombs and layers that are nearly all zeros reach it); `minFreeBytes`: refused when writing it would take the free space of the state filesystem (of the bundle for `ocivirt unpack`) below this, checked every 16 MiB; an unpack that starts below it fails as a host error. A layer over any limit is refused.' },
  { key: 'allowDevices', kind: { type: 'bool' }, default: false, env: 'OCIVIRT_ALLOW_DEVICES',
    doc: 'Create device nodes found in image layers (skipped with a warning otherwise).' },
  { key: 'stopTimeoutSec', kind: { type: 'int', min: 1, max: 3600 }, default: 30, env: 'OCIVIRT_STOP_TIMEOUT_SEC',
    doc: 'Seconds between the stop signal and the destroy of a domain (restart and undefine policies), unless its entry\'s `stopTimeout` says otherwise.' },
  { key: 'stepTimeoutSec', kind: { type: 'int', min: 1, max: 86_400 }, default: 3600, env: 'OCIVIRT_STEP_TIMEOUT_SEC',
    doc: "Deadline of one entry's step (reading and unpacking it, or applying its change): past it the step is aborted (an unpack's worker terminated) and the entry fails. The daemon stops waiting for a step after a few seconds anyway and serves the other entries meanwhile." },
  { key: 'shutdownTimeoutSec', kind: { type: 'int', min: 1, max: 3600 }, default: 20, env: 'OCIVIRT_SHUTDOWN_TIMEOUT_SEC',
    doc: 'On SIGTERM, how long in-flight work may finish before it is aborted and the daemon exits 0 (137 when a call stuck inside libvirt or the kernel could not be cut: the process ends itself with SIGKILL). Containers keep running either way.' },
  { key: 'logLevel', kind: { type: 'enum', values: LOG_LEVELS }, default: 'info', env: 'OCIVIRT_LOG_LEVEL',
    doc: 'pino level of the JSON log on stdout.' },
  { key: 'logFileBytes', kind: { type: 'int', min: 64 * 1024, max: 2 ** 40 }, default: 8 * 1024 * 1024, env: 'OCIVIRT_LOG_FILE_BYTES',
    doc: "Container output (stdout/stderr, kept by the init shim in `<stateDir>/containers/<domain>/run/log/`): the cap of each of its two files, `current` and `previous`, so a container keeps at most twice this. It is part of each container's definition: a change redefines every container, in force at its next start; `ocivirt logs NAME` reads it." },
  { key: 'logsToJournal', kind: { type: 'bool' }, default: false, env: 'OCIVIRT_LOGS_TO_JOURNAL',
    doc: "Also forward every container's output to journald (its stdout stream socket; `SYSLOG_IDENTIFIER` the domain name: `journalctl -t DOMAIN`; stderr at priority err, stdout info, the shim's notices warning), resuming where it stopped after a daemon restart." },
  { key: 'restartPolicy', kind: { type: 'string', pattern: RESTART, patternText: '"no", "always", "on-failure" or "on-failure:N"' }, default: 'no', env: 'OCIVIRT_RESTART_POLICY',
    doc: 'What happens when a container\'s process ends by itself (its exit status is recorded by the init shim), unless its entry\'s settings `restart` says otherwise: `no` leaves it stopped (`exited`), `always` starts it again, `on-failure` unless it exited 0, `on-failure:N` at most N times in a row (then `gave-up`). A stop from outside (`ocivirt stop`, `virsh shutdown`, `virsh destroy`) is never undone. See [entry-settings.md](entry-settings.md#restart).' },
  { key: 'restartDelayMs', kind: { type: 'int', min: 10, max: 600_000 }, default: 1000, env: 'OCIVIRT_RESTART_DELAY_MS',
    doc: 'The first restart\'s delay after an exit; it doubles after each exit that came sooner than `restartMaxDelaySec` after the start, up to that cap.' },
  { key: 'restartMaxDelaySec', kind: { type: 'int', min: 1, max: 86_400 }, default: 300, env: 'OCIVIRT_RESTART_MAX_DELAY_SEC',
    doc: 'The cap of the restart delay; a run at least this long resets the backoff to `restartDelayMs`.' },
  { key: 'crashLoopRestarts', kind: { type: 'int', min: 1, max: 1000 }, default: 5, env: 'OCIVIRT_CRASH_LOOP_RESTARTS',
    doc: 'This many quick exits in a row (each sooner than `restartMaxDelaySec` after its start) make a container `crash-looping` (event `domain.crashlooping`): from then on it is restarted every `restartMaxDelaySec` until a run lasts that long.' },
] as const;

export function defaultConfig(): Config {
  const c: Record<string, unknown> = {};
  for (const s of SETTINGS) c[s.key] = structuredClone(s.default);
  return c as unknown as Config;
}
