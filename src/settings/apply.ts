/**
 * Settings -> runtime config: the one place where an entry's settings file changes what its
 * container runs, for bundle and image entries alike, before the config is converted. The
 * settings file wins over config.json (and over the image's config). Keys acted on outside the
 * config (the stop policy) and keys not acted on yet are recorded as annotations under
 * `org.ocivirt.settings.` (so they travel with the domain and its export); those not acted on yet
 * are listed in `notInForce`, which `status` shows.
 *
 * `publish` is recorded as the annotation org.ocivirt.settings.publish too, and in force: the daemon
 * forwards the published ports of running domains from it (network/ports.ts).
 *
 * `networks` is resolved (addresses allocated) and turned into the annotation org.ocivirt.networks
 * by the caller, which has libvirt (reconcile/desired.ts, network/addresses.ts).
 *
 * Nothing here widens what a container may reach: a bind volume is added as a bind mount only
 * after the same allow-list rule as config.json's mounts (checkMountSource), and the converter
 * then checks the whole config as it checks any other.
 */
import { InputError } from '../errors.js';
import { hostnameForDomainName } from '../convert/identity.js';
import { resolveUser } from '../convert/image-config.js';
import { readUserDb } from '../fsroot/userdb.js';
import type { Mount, RuntimeConfig } from '../oci/runtime-spec.js';
import type { HeldEntry } from '../spool/read.js';
import { checkMountSource } from '../spool/trust.js';
import { RECORDED_PREFIX, type EntrySettings } from './keys.js';

/** CFS period for `cpus`: Docker's and podman's. */
export const CPU_PERIOD_US = 100_000;
const START_ANNOTATION = 'org.ocivirt.start';

export interface ApplyContext {
  /** The settings file: errors name it and the key. */
  file: string;
  domainName: string;
  /** The bundle: held open when it is a spool entry (see checkBundlePaths). */
  bundleDir: string | HeldEntry;
  /** The rootfs as the trust check resolved it (reached through a held bundle): user names are looked up in its /etc files. */
  rootfs: string;
  /** For a container of an image: what the image's config says (Docker's rules for entrypoint and command). */
  image?: { entrypoint?: string[] | null; cmd?: string[] | null; env?: string[] };
  bindAllowList: readonly string[];
}

export interface Applied {
  config: RuntimeConfig;
  /** Keys given that are recorded but not acted on (yet): `status` says so. */
  notInForce: string[];
}

export async function applySettings(config: RuntimeConfig, s: EntrySettings, ctx: ApplyContext): Promise<Applied> {
  const c = structuredClone(config);
  const where = (field: string) => ({ file: ctx.file, field });
  const notInForce: string[] = [];
  const proc = (c.process ??= { cwd: '/', user: { uid: 0, gid: 0 } });

  const args = argsOf(s, ctx.image);
  if (args !== undefined) {
    if (args.length === 0) throw new InputError('leaves nothing to run: entrypoint and command together must name a program', where(s.command !== undefined ? 'command' : 'entrypoint'));
    if (args[0] === '') throw new InputError('the program to run is an empty string', where(s.entrypoint?.length ? 'entrypoint' : 'command'));
    proc.args = args;
  }
  if (s.user !== undefined) {
    let user;
    try {
      const db = await readUserDb(ctx.rootfs);
      user = resolveUser(s.user, db.passwd, db.group);
    } catch (e) {
      if (e instanceof InputError) throw new InputError(e.reason, where('user'));
      throw e;
    }
    proc.user = { ...(proc.user?.umask !== undefined ? { umask: proc.user.umask } : {}), uid: user.uid, gid: user.gid, ...(user.additionalGids ? { additionalGids: user.additionalGids } : {}) };
    // a non-root init loses effective and permitted capabilities at the uid switch anyway
    if (user.uid !== 0 && proc.capabilities) {
      const { effective: _e, permitted: _p, ambient: _a, ...rest } = proc.capabilities;
      proc.capabilities = rest;
    }
    // an image's HOME comes from its user (conversion.md), unless the image or the settings set it
    const imageSetsHome = ctx.image?.env?.some((e) => e.startsWith('HOME=')) === true;
    if (ctx.image !== undefined && !imageSetsHome && s.env?.HOME === undefined && user.home?.startsWith('/'))
      proc.env = withEnv(proc.env ?? [], { HOME: user.home });
  }
  if (s.env !== undefined) proc.env = withEnv(proc.env ?? [], s.env);
  if (s.workdir !== undefined) proc.cwd = s.workdir;
  if (s.hostname !== undefined) {
    c.hostname = s.hostname;
    if (s.hostname !== hostnameForDomainName(ctx.domainName)) notInForce.push('hostname');
  }

  if (s.memory !== undefined || s.cpus !== undefined || s.pids !== undefined) {
    const linux = (c.linux ??= {});
    const r = (linux.resources ??= {});
    if (s.memory !== undefined) r.memory = { ...r.memory, limit: s.memory };
    if (s.cpus !== undefined) r.cpu = { ...r.cpu, quota: Math.round(s.cpus * CPU_PERIOD_US), period: CPU_PERIOD_US };
    if (s.pids !== undefined) {
      r.pids = { limit: s.pids };
      notInForce.push('pids'); // libvirt-lxc has no pids limit
    }
  }

  const annotations: Record<string, string> = { ...c.annotations, ...s.annotations };
  if (s.start !== undefined) annotations[START_ANNOTATION] = String(s.start);
  const record = (key: keyof EntrySettings, value: unknown, inForce = false) => {
    annotations[`${RECORDED_PREFIX}${key}`] = typeof value === 'string' ? value : JSON.stringify(value);
    if (!inForce) notInForce.push(key);
  };
  // in force through the annotations: a stop reads the stop policy back from the domain's metadata
  // (reconcile/stop.ts), the plan its update policy (reconcile/live.ts); the daemon forwards the ports of running domains (network/ports.ts)
  // and restarts them by their restart policy (reconcile/restarts.ts)
  for (const key of ['stopSignal', 'stopTimeout', 'publish', 'updatePolicy', 'restart'] as const) if (s[key] !== undefined) record(key, s[key], true);

  const mounts: Mount[] = [];
  for (const [i, v] of (s.volumes ?? []).entries()) {
    if (v.kind === 'named') continue; // made and mounted after the trust check (volumes/mounts.ts)
    const checked = await checkMountSource(v.source, ctx.bundleDir, ctx.bindAllowList);
    if ('reason' in checked) throw new InputError(checked.reason, where(`volumes[${i}]`));
    mounts.push({ destination: v.destination, type: 'bind', source: checked.resolved, options: ['rbind', v.readOnly ? 'ro' : 'rw'] });
  }
  // a volume wins over a config.json mount at the same place
  const taken = new Set((s.volumes ?? []).map((v) => v.destination));
  if (taken.size) c.mounts = [...(c.mounts ?? []).filter((m) => !taken.has(m.destination)), ...mounts];
  if (Object.keys(annotations).length) c.annotations = annotations;
  return { config: c, notInForce };
}

/**
 * The argv the settings ask for, or undefined when they leave it. For an image, Docker's rules:
 * an entrypoint replaces the image's Entrypoint and drops its Cmd unless a command is given; a
 * command replaces the Cmd after the image's Entrypoint. A bundle has only `process.args`.
 */
function argsOf(s: EntrySettings, image: ApplyContext['image']): string[] | undefined {
  if (s.entrypoint === undefined && s.command === undefined) return undefined;
  if (image === undefined) return s.entrypoint !== undefined ? [...s.entrypoint, ...(s.command ?? [])] : [...s.command!];
  const entrypoint = s.entrypoint ?? image.entrypoint ?? [];
  const command = s.command ?? (s.entrypoint !== undefined ? [] : (image.cmd ?? []));
  return [...entrypoint, ...command];
}

/** `env` over a `NAME=value` list: set in place, appended when new, removed when null. */
export function withEnv(env: readonly string[], changes: Record<string, string | null>): string[] {
  const nameOf = (e: string) => e.slice(0, Math.max(0, e.indexOf('=')));
  const out: string[] = [];
  const done = new Set<string>();
  for (const e of env) {
    const name = nameOf(e);
    if (!Object.hasOwn(changes, name)) {
      out.push(e);
      continue;
    }
    const value = changes[name];
    if (value !== null && value !== undefined && !done.has(name)) out.push(`${name}=${value}`);
    done.add(name);
  }
  for (const [name, value] of Object.entries(changes)) if (!done.has(name) && value !== null) out.push(`${name}=${value}`);
  return out;
}
