/**
 * Desired state: every spool entry -> a bundle (as it is, or an image unpacked into the state
 * directory) -> its domain. An entry that cannot be turned into a domain is a failure of that
 * entry alone; the others go on.
 */
import { join } from 'node:path';
import { errorMessage, InputError } from '../errors.js';
import { fromNative } from '../convert/from-native.js';
import { detectCgroupVersion, rootfsExecutableResolver, statHostDevice } from '../convert/host.js';
import { readBundleConfig, readBundleConfigIn } from '../oci/bundle.js';
import { ANNOTATION_PREFIX, type RuntimeConfig } from '../oci/runtime-spec.js';
import { checkBundlePaths, checkHostDevices, scanSpool, startProblems, type BundlePaths, type HostDeviceAllowList, type RefusedEntry, type SpoolEntry } from '../spool/index.js';
import { unpackImage } from '../image/unpack.js';
import { openSpoolEntry, UnreadableFile, type HeldEntry } from '../spool/read.js';
import type { Domain } from '../xml/domain.js';
import type { StartPolicy } from '../config/index.js';
import type { EventLogger } from '../log.js';
import { DETACHED, runStep, type StepBudget } from './steps.js';

/** `"true"` / `"false"`: start (or not) a new domain, whatever the start policy says. */
export const START_ANNOTATION = `${ANNOTATION_PREFIX}start`;

export interface DesiredDomain {
  entry: string;
  domainName: string;
  domain: Domain;
  /** Start it when it is created. */
  start: boolean;
  /** When `start` is false: why, for the plan and `ocivirt status` ("startPolicy 'never'"). */
  notStarted?: string;
  /** Set when the bundle was unpacked from an image. */
  imageDigest?: string;
  warnings: string[];
}

/** An entry (or a refused spool item) that yields no domain this pass. */
export interface EntryFailure {
  entry: string;
  /** The domain it would have, when known: that domain is left alone, never deleted. */
  domainName?: string;
  error: string;
}

export interface DesiredOptions {
  prefix?: string;
  /** The instance id stamped into each domain's metadata (instance.ts). */
  instance?: string;
  /** Where images are unpacked (`<stateDir>/bundles/<domain>/<version>`); without it image entries fail. */
  stateDir?: string;
  startPolicy?: StartPolicy;
  strict?: boolean;
  bindAllowList?: readonly string[];
  /** Host device nodes and interfaces a config may pass through (none by default). */
  hostDeviceAllowList?: HostDeviceAllowList;
  allowDevices?: boolean;
  unpackLimits?: { maxBytes: number; maxEntries: number };
  /** Receives the unpacker's events (image.verified, image.unpacked, layer.applied). */
  log?: EventLogger;
  /** Each entry's deadline and patience (steps.ts); without it reading an entry takes as long as it takes. */
  steps?: StepBudget;
  /** Aborts the work on this entry (its deadline, or the daemon stopping). */
  signal?: AbortSignal;
}

export interface DesiredState {
  desired: DesiredDomain[];
  failed: EntryFailure[];
  /** Entries still being read or unpacked when the pass stopped waiting for them. */
  busy?: { entry: string; domainName: string }[];
}

/** Image bundles live here: one directory per domain, in it one per image version. */
export function imageBundlesDir(stateDir: string): string {
  return join(stateDir, 'bundles');
}

const CONCURRENCY = 8;

export async function desiredState(spoolDir: string, opts: DesiredOptions = {}): Promise<DesiredState> {
  const { entries, refused } = await scanSpool(spoolDir, { prefix: opts.prefix ?? '' });
  return desiredOf(entries, refused, opts);
}

/** The domains of these entries (read concurrently) and the failures, refused items included. */
export async function desiredOf(entries: readonly SpoolEntry[], refused: readonly RefusedEntry[], opts: DesiredOptions): Promise<DesiredState> {
  const failed: EntryFailure[] = refused.map((r) => ({
    entry: r.name,
    ...(r.domainName !== undefined ? { domainName: r.domainName } : {}),
    error: `${r.path}: ${r.reason}`,
  }));
  const desired: DesiredDomain[] = [];
  const busy: { entry: string; domainName: string }[] = [];
  const cgroupVersion = detectCgroupVersion();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, entries.length) }, async () => {
      while (next < entries.length) {
        const entry = entries[next++]!;
        try {
          const d = await runStep(opts.steps, entry.name, `${entry.path}: reading${entry.kind === 'bundle' ? '' : ' and unpacking'}`, (signal) =>
            desiredDomain(entry, { ...opts, signal }, cgroupVersion),
          );
          if (d === DETACHED) busy.push({ entry: entry.name, domainName: entry.domainName });
          else desired.push(d);
        } catch (e) {
          failed.push({ entry: entry.name, domainName: entry.domainName, error: errorMessage(e) });
        }
      }
    }),
  );
  const byName = (a: { entry: string }, b: { entry: string }) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0);
  return { desired: desired.sort(byName), failed: failed.sort(byName), busy: busy.sort(byName) };
}

export async function desiredDomain(entry: SpoolEntry, opts: DesiredOptions, cgroupVersion: 1 | 2): Promise<DesiredDomain> {
  if (entry.kind === 'bundle') {
    // held open from here on: read and checked as it was when opened, whatever its name leads to later
    const held = await openSpoolEntry(entry.path, 'directory').catch((e: unknown) => {
      throw e instanceof UnreadableFile ? new InputError(e.message, { file: entry.path }) : e;
    });
    try {
      return await bundleDomain(entry, held, entry.path, opts, cgroupVersion);
    } finally {
      await held.close();
    }
  }
  if (opts.stateDir === undefined) throw new Error(`${entry.path}: an image entry needs a state directory (--state) to unpack into`);
  // one directory per image version: a running domain keeps its tree while a new one is unpacked
  // unset options stay undefined: unpackImage reads each with `=== true`, `?.` or a truthiness test
  const unpacked = await unpackImage(entry.path, join(imageBundlesDir(opts.stateDir), entry.domainName), {
    versioned: true,
    allowDevices: opts.allowDevices,
    limits: opts.unpackLimits,
    log: opts.log,
    signal: opts.signal,
  });
  return bundleDomain(entry, unpacked.bundleDir, unpacked.bundleDir, opts, cgroupVersion, { digest: unpacked.manifestDigest, warnings: unpacked.warnings });
}

/**
 * The domain of a bundle: a spool bundle held open, or an image bundle in the state directory
 * (ours: by path). `bundleDir` is its path, for messages and the domain.
 */
async function bundleDomain(
  entry: SpoolEntry,
  dir: HeldEntry | string,
  bundleDir: string,
  opts: DesiredOptions,
  cgroupVersion: 1 | 2,
  image?: { digest: string; warnings: string[] },
): Promise<DesiredDomain> {
  const imageDigest = image?.digest;
  const warnings = [...(image?.warnings ?? [])];
  const { config, configPath } = typeof dir === 'string' ? await readBundleConfig(dir) : await readBundleConfigIn(dir, bundleDir);
  // where root.path and bind sources really lead (a link out of the bundle is refused)
  const paths = await checkBundlePaths(config, dir, opts.bindAllowList ?? [], configPath);
  // a passed-through host device or interface hands over host resources like a bind of '/'
  checkHostDevices(config, configPath, opts.hostDeviceAllowList ?? {});
  const result = fromNative(withCheckedPaths(config, paths), {
    bundleDir,
    file: configPath,
    name: entry.domainName,
    strict: opts.strict === true,
    cgroupVersion,
    owner: { entry: entry.name, ...(opts.instance !== undefined ? { instance: opts.instance } : {}), ...(imageDigest !== undefined ? { imageDigest } : {}) },
    resolveExecutable: rootfsExecutableResolver(paths.rootfsAt),
    hostDevice: statHostDevice,
  });
  // what libvirt would only refuse at start (after a timeout) is refused before the define
  const problems = await startProblems(result.domain, paths.rootfs, paths.rootfsAt);
  if (problems.length) throw new InputError(problems.map((p) => p.reason).join('; '), { file: configPath, field: problems[0]!.field });
  warnings.push(...result.warnings);
  return {
    entry: entry.name,
    domainName: entry.domainName,
    domain: result.domain,
    ...startDecision(config.annotations?.[START_ANNOTATION], opts.startPolicy ?? 'annotation'),
    ...(imageDigest !== undefined ? { imageDigest } : {}),
    warnings,
  };
}

/**
 * The config with root.path and bind sources replaced by what the trust check resolved: the
 * domain names the real directories, so a symlink the spool's writer re-points after the check
 * is never followed by libvirt at start.
 */
function withCheckedPaths(config: RuntimeConfig, paths: BundlePaths): RuntimeConfig {
  const checked = structuredClone(config);
  checked.root = { ...checked.root, path: paths.rootfs };
  for (const s of paths.mountSources) {
    const mount = checked.mounts?.[s.index];
    if (mount !== undefined && s.field === `mounts[${s.index}].source`) mount.source = s.path;
  }
  return checked;
}

/** Whether a new domain is started, and when not, why (said in the plan and in `status`). */
export function startDecision(annotation: string | undefined, policy: StartPolicy): { start: boolean; notStarted?: string } {
  if (policy === 'never') return { start: false, notStarted: "startPolicy 'never'" };
  if (annotation === 'false') return { start: false, notStarted: `annotation ${START_ANNOTATION} is "false"` };
  if (annotation === 'true' || policy === 'always') return { start: true };
  return { start: false, notStarted: `startPolicy 'annotation' and no annotation ${START_ANNOTATION}: "true"` };
}
