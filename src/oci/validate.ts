/**
 * Validation of runtime-spec config.json input, written by hand so the product never reads the
 * schema files at run time. It follows the official schema (runtime-spec config-schema.json,
 * config-linux.json, defs*.json) for every field a Linux config uses, plus the rules the spec's
 * text states but the schema does not encode (absolute paths, `K=V` env entries, unique
 * namespace and rlimit types, ...). Where it deliberately differs from the schema, the list is
 * kept, with a witness for each rule, in test/oci/validate-mutation.test.ts.
 *
 * The first problem found is thrown as an InputError naming the file, the JSON path of the field
 * (`process.args[2]`, `annotations["org.x"]`) and a one-line reason.
 */
import { InputError } from '../errors.js';
import type { RuntimeConfig } from './runtime-spec.js';

/** The runtime-spec versions whose configs ocivirt reads. */
export const SUPPORTED_OCI_VERSIONS = '1.0.x to 1.3.x';
const OCI_VERSION = /^1\.[0-3]\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** Sections of other platforms: a config carrying one is not a Linux container. */
const OTHER_PLATFORMS = ['solaris', 'windows', 'vm', 'zos', 'freebsd'] as const;

type Check = (value: unknown, at: string) => void;

class Invalid extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(reason);
  }
}

function fail(at: string, reason: string): never {
  throw new Invalid(at || '(root)', reason);
}

/**
 * A short, escaped rendering of an offending value for the message (never multi-line). Arrays
 * and objects are only named: serializing hostile input (deeply nested, huge) could overflow
 * the stack or waste time for a message.
 */
function shown(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value) ?? String(value);
    return text.length > 40 ? `${text.slice(0, 37)}...` : text;
  }
  return Array.isArray(value) ? '[...]' : '{...}';
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'number') return Number.isInteger(value) ? 'an integer' : 'a number';
  return `a ${typeof value}`;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const member = (at: string, key: string) =>
  IDENTIFIER.test(key) ? (at ? `${at}.${key}` : key) : `${at}[${JSON.stringify(key)}]`;
const element = (at: string, index: number) => `${at}[${index}]`;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---- primitive checks ---------------------------------------------------------------------

const string: Check = (v, at) => {
  if (typeof v !== 'string') fail(at, `must be a string, got ${typeName(v)}`);
};

const boolean: Check = (v, at) => {
  if (typeof v !== 'boolean') fail(at, `must be true or false, got ${typeName(v)}`);
};

/**
 * An integer in [min, max]. JSON numbers are doubles: the bounds of int64/uint64 round to 2^63
 * and 2^64 exactly as they do for the official schema, so both agree at the edges.
 */
function integer(min: number, max: number, kind: string): Check {
  return (v, at) => {
    if (typeof v !== 'number' || !Number.isInteger(v))
      fail(at, `must be an integer (${kind}), got ${typeName(v)} ${shown(v)}`);
    if (v < min || v > max)
      fail(at, `must be ${max === Infinity ? `at least ${min}` : `${kind} (${min} to ${max})`}, got ${shown(v)}`);
  };
}

const int32 = integer(-(2 ** 31), 2 ** 31 - 1, 'int32');
const int64 = integer(-(2 ** 63), 2 ** 63, 'int64');
const uint16 = integer(0, 65535, 'uint16');
const uint32 = integer(0, 2 ** 32 - 1, 'uint32');
const uint64 = integer(0, 2 ** 64, 'uint64');
const anyInteger = integer(-Infinity, Infinity, 'integer');
const fileMode = integer(0, 0o777, 'file mode, decimal');

function oneOf(values: readonly string[]): Check {
  return (v, at) => {
    string(v, at);
    if (!values.includes(v as string)) fail(at, `must be one of ${values.join(', ')}; got ${shown(v)}`);
  };
}

function matching(pattern: RegExp, what: string): Check {
  return (v, at) => {
    string(v, at);
    if (!pattern.test(v as string)) fail(at, `must be ${what}, got ${shown(v)}`);
  };
}

/** No NUL: these strings end up as C strings (execve, paths). */
const cString = matching(/^[^\0]*$/, 'a string without NUL characters');
const absolutePath = matching(/^\/[^\0]*$/, 'an absolute path (starting with /)');
const nonEmptyPath = matching(/^[^\0]+$/, 'a non-empty path');
/** `NAME=value` as environ(7) has it: a non-empty name without `=`. */
const envEntry = matching(/^[^=\0]+=[^\0]*$/, 'NAME=value');
/** The spec names capabilities as in capabilities(7): CAP_ and upper case. */
const capability = matching(/^CAP_[A-Z0-9_]+$/, 'a capability name like CAP_NET_ADMIN');

// ---- structure ------------------------------------------------------------------------------

function arrayOf(item: Check, opts: { minItems?: number; uniqueBy?: (v: unknown) => unknown; what?: string } = {}): Check {
  return (v, at) => {
    if (!Array.isArray(v)) fail(at, `must be an array, got ${typeName(v)}`);
    if (opts.minItems !== undefined && v.length < opts.minItems)
      fail(at, `must have at least ${opts.minItems} ${opts.minItems === 1 ? 'entry' : 'entries'}`);
    const seen = new Map<unknown, number>();
    v.forEach((x, i) => {
      item(x, element(at, i));
      if (opts.uniqueBy) {
        const key = opts.uniqueBy(x);
        const first = seen.get(key);
        if (first !== undefined) fail(element(at, i), `duplicate ${opts.what ?? 'entry'} ${shown(key)} (also at ${element(at, first)})`);
        seen.set(key, i);
      }
    });
  };
}

/** An object whose keys are free and whose values all pass `value` (the schema's maps). */
function mapOf(value: Check, opts: { nonEmptyKeys?: boolean } = {}): Check {
  return (v, at) => {
    if (!isPlainObject(v)) fail(at, `must be an object, got ${typeName(v)}`);
    for (const [k, x] of Object.entries(v)) {
      if (opts.nonEmptyKeys && k === '') fail(member(at, k), 'keys must not be empty');
      value(x, member(at, k));
    }
  };
}

/**
 * An object with known fields. Unknown fields are allowed, as the spec requires ("MUST ignore
 * unknown properties"); the converter decides what to keep. Only own properties count.
 */
function object(fields: Record<string, Check>, required: readonly string[] = []): Check {
  for (const name of required) if (!(name in fields)) throw new Error(`validate.ts: required field ${name} has no check`);
  return (v, at) => {
    if (!isPlainObject(v)) fail(at, `must be an object, got ${typeName(v)}`);
    // In declared order, so the first field listed (ociVersion) is reported first.
    for (const [name, check] of Object.entries(fields)) {
      if (Object.hasOwn(v, name)) check(v[name], member(at, name));
      else if (required.includes(name)) fail(member(at, name), 'required field is missing');
    }
  };
}

function allOf(...checks: Check[]): Check {
  return (v, at) => checks.forEach((c) => c(v, at));
}

// ---- the runtime-spec config ---------------------------------------------------------------

const strings = arrayOf(string);
const stringMap = mapOf(string, { nonEmptyKeys: true });

const idMapping = object({ containerID: uint32, hostID: uint32, size: uint32 }, ['containerID', 'hostID', 'size']);
const idMappings = arrayOf(idMapping);

const hook = object({ path: absolutePath, args: arrayOf(cString), env: arrayOf(envEntry), timeout: integer(1, Infinity, 'integer') }, ['path']);
const hooks = arrayOf(hook);

const mount = object(
  { destination: absolutePath, source: string, options: strings, type: string, uidMappings: idMappings, gidMappings: idMappings },
  ['destination'],
);

const RLIMITS = [
  'RLIMIT_AS', 'RLIMIT_CORE', 'RLIMIT_CPU', 'RLIMIT_DATA', 'RLIMIT_FSIZE', 'RLIMIT_LOCKS', 'RLIMIT_MEMLOCK',
  'RLIMIT_MSGQUEUE', 'RLIMIT_NICE', 'RLIMIT_NOFILE', 'RLIMIT_NPROC', 'RLIMIT_RSS', 'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME', 'RLIMIT_SIGPENDING', 'RLIMIT_STACK',
] as const;
const rlimit = object({ type: oneOf(RLIMITS), soft: uint64, hard: uint64 }, ['type', 'soft', 'hard']);

const capabilitySet = arrayOf(capability);
const cpuList = matching(/^[0-9, -]*$/, 'a CPU list like "0-3,7"');

const SCHEDULER_POLICIES = ['SCHED_OTHER', 'SCHED_FIFO', 'SCHED_RR', 'SCHED_BATCH', 'SCHED_ISO', 'SCHED_IDLE', 'SCHED_DEADLINE'];
const SCHEDULER_FLAGS = [
  'SCHED_FLAG_RESET_ON_FORK', 'SCHED_FLAG_RECLAIM', 'SCHED_FLAG_DL_OVERRUN', 'SCHED_FLAG_KEEP_POLICY',
  'SCHED_FLAG_KEEP_PARAMS', 'SCHED_FLAG_UTIL_CLAMP_MIN', 'SCHED_FLAG_UTIL_CLAMP_MAX',
];

const process_ = object(
  {
    terminal: boolean,
    consoleSize: object({ height: uint64, width: uint64 }, ['height', 'width']),
    cwd: absolutePath,
    env: arrayOf(envEntry),
    // The spec extends execvp: at least one entry (argv0) on non-Windows platforms.
    args: arrayOf(cString, { minItems: 1 }),
    commandLine: string,
    rlimits: arrayOf(rlimit, { uniqueBy: (r) => (r as { type: string }).type, what: 'rlimit type' }),
    apparmorProfile: string,
    capabilities: object({
      bounding: capabilitySet,
      permitted: capabilitySet,
      effective: capabilitySet,
      inheritable: capabilitySet,
      ambient: capabilitySet,
    }),
    noNewPrivileges: boolean,
    oomScoreAdj: anyInteger,
    scheduler: object(
      {
        policy: oneOf(SCHEDULER_POLICIES),
        nice: int32,
        priority: int32,
        flags: arrayOf(oneOf(SCHEDULER_FLAGS)),
        runtime: uint64,
        deadline: uint64,
        period: uint64,
      },
      ['policy'],
    ),
    selinuxLabel: string,
    ioPriority: object({ class: oneOf(['IOPRIO_CLASS_RT', 'IOPRIO_CLASS_BE', 'IOPRIO_CLASS_IDLE']), priority: int32 }, ['class']),
    execCPUAffinity: object({ initial: cpuList, final: cpuList }),
    // POSIX platforms: user, and its uid and gid, are REQUIRED by the spec's text.
    user: object({ uid: uint32, gid: uint32, umask: uint32, additionalGids: arrayOf(uint32), username: string }, ['uid', 'gid']),
  },
  ['cwd', 'user'],
);

const NAMESPACE_TYPES = ['mount', 'pid', 'network', 'uts', 'ipc', 'user', 'cgroup', 'time'] as const;
const namespace = object({ type: oneOf(NAMESPACE_TYPES), path: absolutePath }, ['type']);

/** Device nodes: major and minor are required except for FIFOs (`p`), as the spec says. */
const device: Check = allOf(
  object({ type: oneOf(['c', 'b', 'u', 'p']), path: absolutePath, major: int64, minor: int64, fileMode, uid: uint32, gid: uint32 }, ['type', 'path']),
  (v, at) => {
    const d = v as Record<string, unknown>;
    if (d.type !== 'p')
      for (const f of ['major', 'minor'])
        if (!Object.hasOwn(d, f)) fail(member(at, f), `required for a device of type '${String(d.type)}'`);
  },
);

const deviceCgroupRule = object(
  { allow: boolean, type: oneOf(['a', 'c', 'b']), major: int64, minor: int64, access: matching(/^[rwm]*$/, 'a combination of r, w and m') },
  ['allow'],
);

const blockIODevice = { major: int64, minor: int64 };
const weightDevice = object({ ...blockIODevice, weight: uint16, leafWeight: uint16 }, ['major', 'minor']);
const throttleDevice = object({ ...blockIODevice, rate: uint64 }, ['major', 'minor', 'rate']);

const resources = object({
  unified: stringMap,
  devices: arrayOf(deviceCgroupRule),
  pids: object({ limit: int64 }, ['limit']),
  blockIO: object({
    weight: uint16,
    leafWeight: uint16,
    weightDevice: arrayOf(weightDevice),
    throttleReadBpsDevice: arrayOf(throttleDevice),
    throttleWriteBpsDevice: arrayOf(throttleDevice),
    throttleReadIOPSDevice: arrayOf(throttleDevice),
    throttleWriteIOPSDevice: arrayOf(throttleDevice),
  }),
  cpu: object({
    cpus: string,
    mems: string,
    period: uint64,
    quota: int64,
    burst: uint64,
    realtimePeriod: uint64,
    realtimeRuntime: int64,
    shares: uint64,
    idle: int64,
  }),
  hugepageLimits: arrayOf(object({ pageSize: matching(/^[1-9][0-9]*[KMG]B$/, 'a page size like 2MB'), limit: uint64 }, ['pageSize', 'limit'])),
  memory: object({
    kernel: int64,
    kernelTCP: int64,
    limit: int64,
    reservation: int64,
    swap: int64,
    swappiness: uint64,
    disableOOMKiller: boolean,
    useHierarchy: boolean,
    checkBeforeUpdate: boolean,
  }),
  network: object({ classID: uint32, priorities: arrayOf(object({ name: string, priority: uint32 }, ['name', 'priority'])) }),
  rdma: mapOf(object({ hcaHandles: uint32, hcaObjects: uint32 })),
});

/**
 * Seccomp is checked loosely on purpose: libvirt-lxc cannot enforce it (the profile is only
 * preserved), and libseccomp grows actions, arches and flags faster than the schema's enums.
 */
const seccompAction = matching(/^SCMP_ACT_[A-Z0-9_]+$/, 'a seccomp action like SCMP_ACT_ERRNO');
const seccomp = object(
  {
    defaultAction: seccompAction,
    defaultErrnoRet: uint32,
    flags: arrayOf(matching(/^SECCOMP_FILTER_FLAG_[A-Z0-9_]+$/, 'a seccomp filter flag like SECCOMP_FILTER_FLAG_LOG')),
    listenerPath: string,
    listenerMetadata: string,
    architectures: arrayOf(matching(/^SCMP_ARCH_[A-Z0-9_]+$/, 'a seccomp architecture like SCMP_ARCH_X86_64')),
    syscalls: arrayOf(
      object(
        {
          names: arrayOf(string, { minItems: 1 }),
          action: seccompAction,
          errnoRet: uint32,
          args: arrayOf(
            object(
              {
                index: uint32,
                value: uint64,
                valueTwo: uint64,
                op: oneOf(['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ']),
              },
              ['index', 'value', 'op'],
            ),
          ),
        },
        ['names', 'action'],
      ),
    ),
  },
  ['defaultAction'],
);

const timeOffset = object({ secs: int64, nanosecs: uint32 });

const linux = object({
  devices: arrayOf(device),
  netDevices: mapOf(object({ name: string })),
  uidMappings: idMappings,
  gidMappings: idMappings,
  // "If a namespaces field contains duplicated namespaces with same type, the runtime MUST generate an error."
  namespaces: arrayOf(namespace, { uniqueBy: (n) => (n as { type: string }).type, what: 'namespace type' }),
  resources,
  cgroupsPath: string,
  rootfsPropagation: oneOf(['private', 'shared', 'slave', 'unbindable']),
  seccomp,
  sysctl: stringMap,
  maskedPaths: arrayOf(absolutePath),
  readonlyPaths: arrayOf(absolutePath),
  mountLabel: string,
  intelRdt: object({
    closID: string,
    schemata: strings,
    l3CacheSchema: string,
    memBwSchema: matching(/^MB:[^\n]*$/, 'a schema starting with "MB:"'),
    enableMonitoring: boolean,
  }),
  memoryPolicy: object({
    mode: oneOf(['MPOL_DEFAULT', 'MPOL_BIND', 'MPOL_INTERLEAVE', 'MPOL_WEIGHTED_INTERLEAVE', 'MPOL_PREFERRED', 'MPOL_PREFERRED_MANY', 'MPOL_LOCAL']),
    nodes: string,
    flags: arrayOf(oneOf(['MPOL_F_NUMA_BALANCING', 'MPOL_F_RELATIVE_NODES', 'MPOL_F_STATIC_NODES'])),
  }),
  personality: object({ domain: oneOf(['LINUX', 'LINUX32']), flags: strings }),
  timeOffsets: object({ boottime: timeOffset, monotonic: timeOffset }),
});

const ociVersion: Check = (v, at) => {
  string(v, at);
  if (!OCI_VERSION.test(v as string))
    fail(at, `version ${shown(v)} is not supported (ocivirt reads runtime-spec ${SUPPORTED_OCI_VERSIONS})`);
};

const config = object(
  {
    ociVersion,
    hooks: object({
      prestart: hooks,
      createRuntime: hooks,
      createContainer: hooks,
      startContainer: hooks,
      poststart: hooks,
      poststop: hooks,
    }),
    annotations: stringMap,
    hostname: string,
    domainname: string,
    mounts: arrayOf(mount),
    // Linux: root is REQUIRED by the spec's text; its path is absolute or relative to the bundle.
    root: object({ path: nonEmptyPath, readonly: boolean }, ['path']),
    process: process_,
    linux,
  },
  ['ociVersion', 'root'],
);

/**
 * Real configs nest less than 10 levels. Deeper input (unknown fields are free-form) would only
 * serve to overflow the stack of code that walks it later (canonical ordering, metadata), so it
 * is refused here, walking with an explicit stack.
 */
export const MAX_NESTING = 64;
function refuseDeepNesting(value: unknown): void {
  const stack: { v: unknown; at: string; depth: number }[] = [{ v: value, at: '', depth: 0 }];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { v, at, depth } = item;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_NESTING) fail(at, `nested deeper than ${MAX_NESTING} levels`);
    if (Array.isArray(v)) v.forEach((x, i) => stack.push({ v: x, at: element(at, i), depth: depth + 1 }));
    else for (const [k, x] of Object.entries(v)) stack.push({ v: x, at: member(at, k), depth: depth + 1 });
  }
}

const refuseOtherPlatforms: Check = (v, at) => {
  const c = v as Record<string, unknown>;
  for (const platform of OTHER_PLATFORMS)
    if (Object.hasOwn(c, platform))
      fail(member(at, platform), `a ${platform} section: ocivirt runs Linux containers only`);
};

/** Checks a parsed config.json; returns it typed, or throws an InputError naming `file` and the field. */
export function validateRuntimeConfig(value: unknown, file?: string): RuntimeConfig {
  try {
    if (!isPlainObject(value)) fail('', `must be a JSON object, got ${typeName(value)}`);
    refuseDeepNesting(value);
    refuseOtherPlatforms(value, ''); // first: another platform's config breaks Linux rules for that reason alone
    config(value, '');
  } catch (e) {
    if (e instanceof Invalid) throw new InputError(e.reason, { file, field: e.field });
    throw e;
  }
  return value as unknown as RuntimeConfig;
}
