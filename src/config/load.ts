/**
 * Loading the daemon's configuration: defaults, then the file, then OCIVIRT_* environment
 * variables, then command-line flags; each layer checked by hand, with errors naming where the
 * value came from (the file, `environment`, `command line`) and the key (InputError: exit 2).
 */
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import { isAbsolute, normalize, relative, sep } from 'node:path';
import { InputError } from '../errors.js';
import { writerProblems } from '../spool/trust.js';
import { DEFAULT_UNPACK_LIMITS, defaultConfig, SETTINGS, type Config, type Kind, type Setting, type UnpackLimits } from './settings.js';

/** Where a packaged install keeps the file; used when no --config / OCIVIRT_CONFIG names one. */
export const DEFAULT_CONFIG_FILE = '/etc/ocivirt/ocivirt.json';
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface LoadOptions {
  /** An explicit file (--config): it must exist. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by config key, already named (`spoolDir`, not `--spool`). */
  flags?: Partial<Pick<Config, 'spoolDir' | 'stateDir' | 'exportDir' | 'uri'>>;
  /** Flag spelling per key, for error messages. */
  flagNames?: Partial<Record<keyof Config, string>>;
  /** The optional file read when none is named (default: DEFAULT_CONFIG_FILE). */
  defaultFile?: string;
}

export interface LoadedConfig {
  config: Config;
  /** The file read, or undefined when none was. */
  file: string | undefined;
}

export async function loadConfig(opts: LoadOptions = {}): Promise<LoadedConfig> {
  const env = opts.env ?? process.env;
  const config = defaultConfig();
  const explicit = opts.file ?? (env.OCIVIRT_CONFIG !== undefined && env.OCIVIRT_CONFIG !== '' ? env.OCIVIRT_CONFIG : undefined);
  const file = explicit ?? opts.defaultFile ?? DEFAULT_CONFIG_FILE;
  const text = await readConfigText(file, explicit !== undefined);
  if (text !== undefined) applyFile(config, text, file);

  for (const s of SETTINGS) {
    if (s.env === undefined) continue;
    const raw = env[s.env];
    if (raw === undefined || raw === '') continue;
    set(config, s, parseText(s, raw, { file: 'environment', field: s.env }));
  }
  for (const [key, value] of Object.entries(opts.flags ?? {}) as [keyof Config, unknown][]) {
    if (value === undefined) continue;
    const s = SETTINGS.find((x) => x.key === key)!;
    const where = { file: 'command line', field: opts.flagNames?.[key] ?? key };
    set(config, s, checkKind(s.kind, value, where));
  }
  checkWhole(config, text !== undefined ? file : 'configuration');
  return { config, file: text !== undefined ? file : undefined };
}

/**
 * The file's text, read once through one fd. The file is root-equivalent (bindAllowList,
 * allowDevices, allowInsecureDirs), so it gets the spool's rule: owned by root or this user, not
 * writable by group or others, nor replaceable through a directory above it. No setting relaxes
 * this: a setting would come from the very file in question.
 */
async function readConfigText(file: string, required: boolean): Promise<string | undefined> {
  let real: string;
  try {
    real = await realpath(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return undefined;
    throw new InputError(`cannot be read (${code ?? (e as Error).message})`, { file });
  }
  let fh;
  try {
    fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    throw new InputError(`cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InputError('is not a regular file', { file });
    const problems = await writerProblems(real, st, process.getuid?.() ?? 0);
    if (problems.length)
      throw new InputError(`refused: ${problems[0]} (its settings decide what containers may reach on the host; fix the mode or owner)`, { file });
    if (st.size > MAX_CONFIG_BYTES) throw new InputError(`larger than ${MAX_CONFIG_BYTES} bytes`, { file });
    const data = await fh.readFile();
    if (data.length > MAX_CONFIG_BYTES) throw new InputError(`larger than ${MAX_CONFIG_BYTES} bytes`, { file });
    return data.toString('utf8');
  } finally {
    await fh.close();
  }
}

function applyFile(config: Config, text: string, file: string): void {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`not valid JSON (${(e as Error).message}); comments are not allowed, see docs/configuration.md`, { file });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new InputError('must be a JSON object', { file });
  for (const [key, value] of Object.entries(json)) {
    const s = SETTINGS.find((x) => x.key === key);
    if (s === undefined) {
      const near = SETTINGS.find((x) => x.key.toLowerCase() === key.toLowerCase());
      throw new InputError(`unknown setting${near ? ` (did you mean '${near.key}'?)` : ''}`, { file, field: key });
    }
    set(config, s, checkKind(s.kind, value, { file, field: key }));
  }
}

function set(config: Config, s: Setting, value: unknown): void {
  (config as unknown as Record<string, unknown>)[s.key] = value;
}

type Where = { file: string; field: string };

function checkKind(kind: Kind, value: unknown, where: Where): unknown {
  const bad = (what: string): never => {
    throw new InputError(`${what}, got ${JSON.stringify(value)}`, where);
  };
  switch (kind.type) {
    case 'path':
      if (typeof value !== 'string' || !isAbsolute(value)) bad('must be an absolute path');
      if ((value as string).includes('\0')) bad('must not contain NUL');
      return normalize(value as string).replace(/(.)\/$/, '$1');
    case 'string':
      if (typeof value !== 'string') bad('must be a string');
      if (kind.pattern && !kind.pattern.test(value as string)) bad(`must be ${kind.patternText ?? kind.pattern.source}`);
      return value;
    case 'enum':
      if (typeof value !== 'string' || !kind.values.includes(value)) bad(`must be one of ${kind.values.map((v) => `"${v}"`).join(', ')}`);
      return value;
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < kind.min || value > kind.max)
        bad(`must be an integer from ${kind.min} to ${kind.max}`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') bad('must be true or false');
      return value;
    case 'paths':
      if (!Array.isArray(value)) bad('must be an array of absolute paths');
      return (value as unknown[]).map((p, i) => checkKind({ type: 'path' }, p, { file: where.file, field: `${where.field}[${i}]` }));
    case 'names':
      if (!Array.isArray(value)) bad(`must be an array of names`);
      return (value as unknown[]).map((n, i) => {
        if (typeof n !== 'string' || !kind.pattern.test(n))
          throw new InputError(`must be ${kind.patternText}, got ${JSON.stringify(n)}`, { file: where.file, field: `${where.field}[${i}]` });
        return n;
      });
    case 'devices': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('must be an object {devices, netDevices}');
      const v = value as Record<string, unknown>;
      for (const k of Object.keys(v))
        if (k !== 'devices' && k !== 'netDevices') throw new InputError('unknown key (devices, netDevices)', { file: where.file, field: `${where.field}.${k}` });
      const devices = v.devices === undefined ? [] : (checkKind({ type: 'paths' }, v.devices, { file: where.file, field: `${where.field}.devices` }) as string[]);
      if (v.netDevices !== undefined && !Array.isArray(v.netDevices))
        throw new InputError(`must be an array of interface names, got ${JSON.stringify(v.netDevices)}`, { file: where.file, field: `${where.field}.netDevices` });
      const netDevices = ((v.netDevices ?? []) as unknown[]).map((n, i) => {
        // IFNAMSIZ: at most 15 bytes, no '/', ':' or whitespace, not '.' or '..'
        if (typeof n !== 'string' || !/^[^\s/:]{1,15}$/.test(n) || n === '.' || n === '..')
          throw new InputError(`must be a network interface name (1 to 15 characters, no '/', ':' or spaces), got ${JSON.stringify(n)}`, {
            file: where.file,
            field: `${where.field}.netDevices[${i}]`,
          });
        return n;
      });
      return { devices, netDevices };
    }
    case 'limits': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('must be an object {maxBytes, maxEntries, maxRatio, minFreeBytes}');
      const v = value as Record<string, unknown>;
      const bounds: Record<keyof UnpackLimits, { min: number; max: number }> = {
        maxBytes: { min: 1, max: Number.MAX_SAFE_INTEGER },
        maxEntries: { min: 1, max: 100_000_000 },
        maxRatio: { min: 0, max: 1_000_000 },
        minFreeBytes: { min: 0, max: Number.MAX_SAFE_INTEGER },
      };
      const out: UnpackLimits = { ...DEFAULT_UNPACK_LIMITS };
      for (const [k, x] of Object.entries(v)) {
        if (!Object.hasOwn(bounds, k)) throw new InputError('unknown limit (maxBytes, maxEntries, maxRatio, minFreeBytes)', { file: where.file, field: `${where.field}.${k}` });
        const key = k as keyof UnpackLimits;
        if (x !== undefined) out[key] = checkKind({ type: 'int', ...bounds[key] }, x, { file: where.file, field: `${where.field}.${k}` }) as number;
      }
      return out;
    }
  }
}

/** An environment variable's text, turned into the value its setting takes. */
function parseText(s: Setting, raw: string, where: Where): unknown {
  switch (s.kind.type) {
    case 'int': {
      if (!/^-?\d+$/.test(raw.trim())) throw new InputError(`must be an integer, got ${JSON.stringify(raw)}`, where);
      return checkKind(s.kind, Number(raw.trim()), where);
    }
    case 'bool': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new InputError(`must be true or false (1/0, yes/no), got ${JSON.stringify(raw)}`, where);
    }
    default:
      return checkKind(s.kind, raw, where);
  }
}

/** `path` is `dir` or below it (both absolute and normalised). */
export function isInsideOrSame(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === '' || (!rel.startsWith('..' + sep) && rel !== '..' && !isAbsolute(rel));
}

/** Rules between settings: the three directories must stay apart (export never feeds the spool). */
function checkWhole(c: Config, file: string): void {
  const dirs: [keyof Config, string][] = [
    ['spoolDir', c.spoolDir],
    ['stateDir', c.stateDir],
    ['exportDir', c.exportDir],
  ];
  for (const [ka, a] of dirs)
    for (const [kb, b] of dirs)
      if (ka !== kb && isInsideOrSame(a, b))
        throw new InputError(`${a} is inside or equal to ${kb} (${b}): spool, state and export must be separate directories`, { file, field: ka });
}
