/**
 * `ocivirt validate`: spool entries checked with exactly the daemon's rules (the same scan, the
 * same `desiredOfEntry`: settings, schema, trust, conversion, pre-flight), without libvirt and
 * without touching the spool or the state directory. Image entries are unpacked, as the daemon
 * would, into a temporary directory that is removed afterwards (user names and executables are
 * looked up in the unpacked tree).
 */
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { detectCgroupVersion } from '../convert/host.js';
import { errorMessage, InputError } from '../errors.js';
import { checkDirectoryTrust, entryStem, scanSpool, type RefusedEntry, type SpoolEntry } from '../spool/index.js';
import { desiredOfEntry, type DesiredOptions } from './desired.js';

export interface Problem {
  /** The spool entry it concerns (its name in the spool). */
  entry: string;
  file?: string;
  field?: string;
  reason: string;
  /** The one line the daemon would log: `file: field: reason`. */
  message: string;
}

export interface ValidateResult {
  /** Entries checked (by name), with their spool. */
  checked: { spool: string; entry: string }[];
  problems: Problem[];
}

/** The options of a pass (from the configuration) that decide what an entry may be. */
export type ValidateOptions = Pick<
  DesiredOptions,
  'prefix' | 'startPolicy' | 'strict' | 'bindAllowList' | 'hostDeviceAllowList' | 'defaultNetwork' | 'bridgeAllowList' | 'allowDevices' | 'unpackLimits'
> & { allowInsecureDirs?: boolean };

/** What a path names: a whole spool, or one item of a spool (a bundle, an image, a settings file). */
async function target(path: string): Promise<{ spool: string; only?: string }> {
  const abs = resolve(path);
  const st = await lstat(abs).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot be examined (${e.code ?? e.message})`, { file: path });
  });
  if (st.isDirectory()) {
    const marker = async (name: string) => (await lstat(join(abs, name)).catch(() => null)) !== null;
    if (!(await marker('config.json')) && !(await marker('oci-layout'))) return { spool: abs };
  }
  return { spool: dirname(abs), only: basename(abs) };
}

export async function validatePaths(paths: readonly string[], opts: ValidateOptions): Promise<ValidateResult> {
  const scratch = await mkdtemp(join(tmpdir(), 'ocivirt-validate-'));
  const result: ValidateResult = { checked: [], problems: [] };
  try {
    const cgroupVersion = detectCgroupVersion();
    for (const path of paths) {
      const { spool, only } = await target(path);
      if (only === undefined) {
        // the daemon refuses to start on a spool others can write
        await checkDirectoryTrust(spool, { allowInsecure: opts.allowInsecureDirs === true }).catch((e: unknown) => {
          result.problems.push(problemOf('(spool)', e));
        });
      }
      const scan = await scanSpool(spool, { prefix: opts.prefix ?? '' });
      // one item: the entry it is or belongs to (a settings file beside its entry is checked with it)
      const mine = (x: { name: string; settings?: { name: string } }) =>
        only === undefined || x.name === only || x.settings?.name === only || (only.endsWith('.ocivirt.json') && entryStem(x.name) === entryStem(only) && 'reason' in x);
      const entries = scan.entries.filter(mine);
      const refused = scan.refused.filter(mine);
      if (only !== undefined && entries.length === 0 && refused.length === 0)
        result.problems.push(problemOf(only, new InputError('is not a spool entry (names starting with "." are ignored)', { file: join(spool, only) })));
      for (const r of refused) {
        result.checked.push({ spool, entry: r.name });
        result.problems.push(refusal(r));
      }
      for (const e of entries) {
        result.checked.push({ spool, entry: e.name });
        await checkEntry(e, spool, scratch, opts, cgroupVersion).catch((err: unknown) => result.problems.push(problemOf(e.name, err)));
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return result;
}

async function checkEntry(entry: SpoolEntry, spool: string, scratch: string, opts: ValidateOptions, cgroupVersion: 1 | 2): Promise<void> {
  const options: DesiredOptions = {
    ...opts,
    spoolDir: spool,
    // the daemon's state directory is never touched: images go to the scratch directory
    stateDir: join(scratch, 'state'),
    instance: '00000000-0000-0000-0000-000000000000',
  };
  await desiredOfEntry(entry, options, cgroupVersion);
}

function refusal(r: RefusedEntry): Problem {
  return { entry: r.name, file: r.path, reason: r.reason, message: `${r.path}: ${r.reason}` };
}

function problemOf(entry: string, e: unknown): Problem {
  if (e instanceof InputError)
    return { entry, ...(e.file !== undefined ? { file: e.file } : {}), ...(e.field !== undefined ? { field: e.field } : {}), reason: e.reason, message: e.message };
  return { entry, reason: errorMessage(e), message: errorMessage(e) };
}
