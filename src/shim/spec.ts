/**
 * The spec file of the container init shim (shim/ocivirt-init.c, format in shim/README.md):
 * from a runtime config to the bytes the shim parses. Everything the shim enforces is encoded;
 * what it cannot enforce is refused here with an InputError naming the field, so nothing is
 * silently dropped.
 *
 * The file is NUL-terminated tokens: `ocivirt-init-spec 1`, then records (a keyword and its
 * tokens), then `end`.
 */
import { InputError, shortJson } from '../errors.js';
import type { RuntimeConfig } from '../oci/runtime-spec.js';

export const SHIM_SPEC_MAGIC = 'ocivirt-init-spec';
export const SHIM_SPEC_VERSION = '1';

export interface ShimSpecOptions {
  /** Where the shim records the process's exit status (absolute, as the shim sees it). */
  statusPath?: string;
  /** Capture stdout/stderr into `dir` (absolute, as the shim sees it): `current` and `previous`, each at most `fileBytes`. */
  log?: { dir: string; fileBytes: number };
  /**
   * Set the five capability sets exactly as process.capabilities says (absent sets: empty),
   * keeping only capabilities in `grantable` (what the shim is given; the others cannot be
   * raised and are the converter's warning). Without it the shim leaves capabilities alone.
   */
  capabilities?: { grantable: ReadonlySet<string> };
}

/** Bounds of one log file's cap, as the shim checks them (shim/log.h). */
export const LOG_FILE_MIN = 64 * 1024;
export const LOG_FILE_MAX = 2 ** 40;

/** Capability numbers (linux/capability.h), by OCI name. */
export const CAPABILITY_NUMBERS: Record<string, number> = Object.fromEntries(
  [
    'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
    'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
    'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
    'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
    'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
    'CHECKPOINT_RESTORE',
  ].map((n, i) => [`CAP_${n}`, i]),
);
const CAP_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;

export const RLIMIT_TYPES = [
  'RLIMIT_AS', 'RLIMIT_CORE', 'RLIMIT_CPU', 'RLIMIT_DATA', 'RLIMIT_FSIZE', 'RLIMIT_LOCKS',
  'RLIMIT_MEMLOCK', 'RLIMIT_MSGQUEUE', 'RLIMIT_NICE', 'RLIMIT_NOFILE', 'RLIMIT_NPROC', 'RLIMIT_RSS',
  'RLIMIT_RTPRIO', 'RLIMIT_RTTIME', 'RLIMIT_SIGPENDING', 'RLIMIT_STACK',
] as const;

/** Actions the shim applies; `SCMP_ACT_NOTIFY` needs a listener (seccomp agent) and is refused. */
export const SECCOMP_ACTIONS = [
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG',
] as const;
const ERRNO_ACTIONS = new Set(['SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE']);
export const SECCOMP_FLAGS = ['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'] as const;
export const SECCOMP_OPERATORS = [
  'SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ',
] as const;
/** runtime-spec's architecture enum (defs-linux.json SeccompArch). */
export const SECCOMP_ARCHES = [
  'SCMP_ARCH_X86', 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_LOONGARCH64', 'SCMP_ARCH_M68K', 'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64', 'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390', 'SCMP_ARCH_S390X', 'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
  'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64',
] as const;
/** Seccomp keys the shim understands; any other key is refused (it could change the filter's meaning). */
const SECCOMP_KEYS = new Set(['defaultAction', 'defaultErrnoRet', 'architectures', 'flags', 'syscalls']);
const SYSCALL_KEYS = new Set(['names', 'action', 'errnoRet', 'args']);
const ARG_KEYS = new Set(['index', 'value', 'valueTwo', 'op']);

const EPERM = 1;
const UINT32_MAX = 0xffff_ffff;
/** 2^64 - 1 parsed by JSON.parse: the double rounds it (and only it, among valid uint64s that large) to 2^64. */
const UINT64_MAX_AS_DOUBLE = 2 ** 64;
const UINT64_MAX = '18446744073709551615';
const SYSCTL_KEY = /^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$/;

function bad(field: string, reason: string): never {
  throw new InputError(reason, { field });
}

/** A string token: no NUL (the separator). */
function text(value: unknown, field: string): string {
  if (typeof value !== 'string') bad(field, `must be a string, not ${shortJson(value)}`);
  if (value.includes('\0')) bad(field, 'contains a NUL byte, which no process argument, env entry or path can carry');
  return value;
}

function integer(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    bad(field, `must be an integer from ${min} to ${max}, not ${shortJson(value)}`);
  }
  return value;
}

/**
 * A uint64 from JSON as decimal text. JSON.parse keeps integers exactly only up to 2^53; larger
 * ones would reach the shim changed, so they are refused, except 2^64 - 1 (unlimited, the one
 * value profiles and rlimits really use up there), which JSON.parse turns into 2^64.
 */
function uint64(value: unknown, field: string): string {
  if (value === UINT64_MAX_AS_DOUBLE) return UINT64_MAX;
  if (typeof value === 'bigint' && value >= 0n && value <= 2n ** 64n - 1n) return value.toString();
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    bad(field, `must be an unsigned 64-bit integer, not ${shortJson(value)}`);
  }
  if (!Number.isSafeInteger(value)) {
    bad(field, `${shortJson(value)} is above 2^53 and was rounded when the JSON was read: refused rather than enforced changed`);
  }
  return String(value);
}

function list(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) bad(field, `must be an array, not ${shortJson(value)}`);
  return value;
}

function record(value: unknown, field: string): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) bad(field, `must be an object, not ${shortJson(value)}`);
  return value as Record<string, unknown>;
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string, what: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    bad(field, `${shortJson(value)} is not ${what} the shim supports (${allowed.join(', ')})`);
  }
  return value as T;
}

function onlyKeys(obj: Record<string, unknown>, keys: Set<string>, field: string): void {
  for (const key of Object.keys(obj)) {
    if (!keys.has(key)) {
      const why = key === 'listenerPath' || key === 'listenerMetadata'
        ? 'a seccomp agent (SCMP_ACT_NOTIFY listener) is not supported by the shim'
        : 'is not a field the shim can enforce';
      bad(`${field}.${key}`, why);
    }
  }
}

/** `[action, errno]` tokens: errno only for ERRNO/TRACE (default EPERM), refused on any other action. */
function action(obj: Record<string, unknown>, actionKey: string, errnoKey: string, field: string): [string, string] {
  const name = obj[actionKey];
  if (name === 'SCMP_ACT_NOTIFY') bad(`${field}.${actionKey}`, 'SCMP_ACT_NOTIFY needs a seccomp agent, which the shim does not support');
  const act = oneOf(name, SECCOMP_ACTIONS, `${field}.${actionKey}`, 'a seccomp action');
  const errno = obj[errnoKey];
  if (ERRNO_ACTIONS.has(act)) {
    return [act, String(errno === undefined ? EPERM : integer(errno, `${field}.${errnoKey}`, 0, 65535))];
  }
  if (errno !== undefined) bad(`${field}.${errnoKey}`, `${act} takes no errno (runtime-spec: the runtime must fail)`);
  return [act, '0'];
}

function seccompTokens(raw: unknown, out: string[]): void {
  const field = 'linux.seccomp';
  const seccomp = record(raw, field);
  onlyKeys(seccomp, SECCOMP_KEYS, field);
  if (seccomp.defaultAction === undefined) bad(`${field}.defaultAction`, 'required field is missing');
  out.push('seccomp_default', ...action(seccomp, 'defaultAction', 'defaultErrnoRet', field));
  for (const [i, arch] of list(seccomp.architectures ?? [], `${field}.architectures`).entries()) {
    out.push('seccomp_arch', oneOf(arch, SECCOMP_ARCHES, `${field}.architectures[${i}]`, 'a seccomp architecture'));
  }
  for (const [i, flag] of list(seccomp.flags ?? [], `${field}.flags`).entries()) {
    out.push('seccomp_flag', oneOf(flag, SECCOMP_FLAGS, `${field}.flags[${i}]`, 'a seccomp filter flag'));
  }
  for (const [i, rawRule] of list(seccomp.syscalls ?? [], `${field}.syscalls`).entries()) {
    const at = `${field}.syscalls[${i}]`;
    const rule = record(rawRule, at);
    onlyKeys(rule, SYSCALL_KEYS, at);
    const names = list(rule.names, `${at}.names`);
    if (names.length === 0) bad(`${at}.names`, 'must name at least one syscall');
    const [act, errno] = action(rule, 'action', 'errnoRet', at);
    const args: string[] = [];
    const rawArgs = list(rule.args ?? [], `${at}.args`);
    if (rawArgs.length > 6) bad(`${at}.args`, `has ${rawArgs.length} conditions; a syscall has 6 arguments`);
    for (const [j, rawArg] of rawArgs.entries()) {
      const aat = `${at}.args[${j}]`;
      const arg = record(rawArg, aat);
      onlyKeys(arg, ARG_KEYS, aat);
      args.push(
        String(integer(arg.index, `${aat}.index`, 0, 5)),
        oneOf(arg.op, SECCOMP_OPERATORS, `${aat}.op`, 'a seccomp operator'),
        uint64(arg.value, `${aat}.value`),
        arg.valueTwo === undefined ? '0' : uint64(arg.valueTwo, `${aat}.valueTwo`),
      );
    }
    for (const [j, name] of names.entries()) {
      const n = text(name, `${at}.names[${j}]`);
      if (n === '') bad(`${at}.names[${j}]`, 'is empty');
      out.push('seccomp_rule', n, act, errno, String(rawArgs.length), ...args);
    }
  }
}

/** The spec file bytes for `config`'s process (the config is expected to have passed validateRuntimeConfig). */
export function encodeShimSpec(config: RuntimeConfig, options: ShimSpecOptions = {}): Buffer {
  const out: string[] = [SHIM_SPEC_MAGIC, SHIM_SPEC_VERSION];
  const proc = config.process;
  if (proc === undefined) bad('process', 'required to run a container through the shim');

  const args = list(proc.args, 'process.args');
  if (args.length === 0) bad('process.args', 'must name the program to run');
  for (const [i, arg] of args.entries()) out.push('arg', text(arg, `process.args[${i}]`));
  if (args[0] === '') bad('process.args[0]', 'the program is empty');

  for (const [i, entry] of list(proc.env ?? [], 'process.env').entries()) {
    const e = text(entry, `process.env[${i}]`);
    if (e.indexOf('=') <= 0) bad(`process.env[${i}]`, `${shortJson(e)} is not NAME=VALUE`);
    out.push('env', e);
  }

  const cwd = text(proc.cwd, 'process.cwd');
  if (!cwd.startsWith('/')) bad('process.cwd', `${shortJson(cwd)} is not absolute`);
  out.push('cwd', cwd);

  const user = record(proc.user, 'process.user');
  // 2^32 - 1 is (uid_t)-1, "no change" to setresuid: not a user
  out.push('user', String(integer(user.uid, 'process.user.uid', 0, UINT32_MAX - 1)),
    String(integer(user.gid, 'process.user.gid', 0, UINT32_MAX - 1)));
  for (const [i, g] of list(user.additionalGids ?? [], 'process.user.additionalGids').entries()) {
    out.push('group', String(integer(g, `process.user.additionalGids[${i}]`, 0, UINT32_MAX - 1)));
  }
  if (user.umask !== undefined) out.push('umask', String(integer(user.umask, 'process.user.umask', 0, 0o777)));

  const seen = new Set<string>();
  for (const [i, rawLimit] of list(proc.rlimits ?? [], 'process.rlimits').entries()) {
    const at = `process.rlimits[${i}]`;
    const limit = record(rawLimit, at);
    const type = oneOf(limit.type, RLIMIT_TYPES, `${at}.type`, 'an rlimit');
    // runtime-spec: "If config.json contains duplicate rlimits with the same type, the runtime MUST error out"
    if (seen.has(type)) bad(`${at}.type`, `${type} appears twice`);
    seen.add(type);
    const soft = uint64(limit.soft, `${at}.soft`);
    const hard = uint64(limit.hard, `${at}.hard`);
    if (BigInt(soft) > BigInt(hard)) bad(`${at}.soft`, `${soft} is above the hard limit ${hard}`);
    out.push('rlimit', type, soft, hard);
  }

  if (proc.oomScoreAdj !== undefined) out.push('oom_score_adj', String(integer(proc.oomScoreAdj, 'process.oomScoreAdj', -1000, 1000)));
  if (proc.noNewPrivileges === true) out.push('no_new_privs');
  else if (proc.noNewPrivileges !== undefined && proc.noNewPrivileges !== false) {
    bad('process.noNewPrivileges', `must be a boolean, not ${shortJson(proc.noNewPrivileges)}`);
  }

  const sysctl = config.linux?.sysctl;
  if (sysctl !== undefined) {
    for (const [key, value] of Object.entries(record(sysctl, 'linux.sysctl'))) {
      const at = `linux.sysctl[${JSON.stringify(key)}]`;
      if (!SYSCTL_KEY.test(key) || key.split(/[./]/).some((c) => c === '..')) {
        bad(at, 'is not a sysctl name (letters, digits, _ and -, separated by . or /)');
      }
      out.push('sysctl', key, text(value, at));
    }
  }

  if (config.linux?.seccomp !== undefined) seccompTokens(config.linux.seccomp, out);

  if (options.capabilities !== undefined) {
    const caps = proc.capabilities === undefined ? {} : record(proc.capabilities, 'process.capabilities');
    out.push('caps');
    for (const set of CAP_SETS) {
      const numbers = new Set<number>();
      for (const [i, name] of list(caps[set] ?? [], `process.capabilities.${set}`).entries()) {
        const n = text(name, `process.capabilities.${set}[${i}]`).toUpperCase();
        const key = n.startsWith('CAP_') ? n : `CAP_${n}`;
        const number = CAPABILITY_NUMBERS[key];
        if (number !== undefined && options.capabilities.grantable.has(key)) numbers.add(number);
      }
      for (const number of [...numbers].sort((a, b) => a - b)) out.push('cap', set, String(number));
    }
  }

  if (options.statusPath !== undefined) {
    const p = text(options.statusPath, 'statusPath');
    if (!p.startsWith('/')) bad('statusPath', `${shortJson(p)} is not absolute`);
    out.push('status', p);
  }
  if (options.log !== undefined) {
    const dir = text(options.log.dir, 'log.dir');
    if (!dir.startsWith('/')) bad('log.dir', `${shortJson(dir)} is not absolute`);
    out.push('log', dir, String(integer(options.log.fileBytes, 'log.fileBytes', LOG_FILE_MIN, LOG_FILE_MAX)));
  }
  out.push('end');
  return Buffer.from(out.map((t) => `${t}\0`).join(''), 'utf8');
}

/** The tokens of a spec file (for tests and diagnostics; the shim's own parser is the authority). */
export function shimSpecTokens(bytes: Buffer): string[] {
  const s = bytes.toString('utf8');
  if (!s.endsWith('\0')) throw new InputError('the spec file does not end with a NUL');
  return s.slice(0, -1).split('\0');
}
