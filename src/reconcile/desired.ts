/**
 * Desired state: every spool entry -> a bundle (as it is, or an image unpacked into the state
 * directory) -> its domain. An entry that cannot be turned into a domain is a failure of that
 * entry alone; the others go on.
 */
import { basename, join, posix } from 'node:path';
import { errorMessage, InputError } from '../errors.js';
import { fromNative } from '../convert/from-native.js';
import { detectCgroupVersion, rootfsExecutableResolver, statHostDevice } from '../convert/host.js';
import { readBundleConfig, readBundleConfigIn } from '../oci/bundle.js';
import { ANNOTATION_PREFIX, type RuntimeConfig } from '../oci/runtime-spec.js';
import {
  checkBundlePaths,
  checkHostDevices,
  entryStem,
  inspectEntry,
  scanSpool,
  SETTINGS_SUFFIX,
  startProblems,
  type BundlePaths,
  type HostDeviceAllowList,
  type RefusedEntry,
  type SpoolEntry,
} from '../spool/index.js';
import { unpackImage, type UnpackOptions, type UnpackResult } from '../image/unpack.js';
import { SelectionError, type ChoiceHint } from '../image/resolve.js';
import { applySettings, checkRole, readEntrySettings, type ReadSettings } from '../settings/index.js';
import { containerTree, unpackShared } from './images.js';
import { copiedRootfs } from './bundle-copy.js';
import { openSpoolEntry, UnreadableFile, type HeldEntry } from '../spool/read.js';
import { entryVolumes, volumeMounts } from '../volumes/index.js';
import type { Domain } from '../xml/domain.js';
import type { AddressBook, ResolvedAttachment } from '../network/addresses.js';
import { checkInterfaces, withNetworks, withoutBundleSay } from '../network/entry.js';
import { etcContents, etcDirOf, planEtcMounts, writeEtcFiles, type EtcPlan } from '../network/etc-files.js';
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
  /** Settings given that are recorded but not in force (yet): said in the plan and `status`. */
  notInForce?: string[];
  /** The shared image tree a settings entry's container was copied from (images.ts). */
  imageTree?: string;
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
  /** The spool: a settings entry finds the image entry it names there. */
  spoolDir?: string;
  /** May this spool item be read now? A container waits for the image entry it names (default: yes). */
  settled?: (name: string) => boolean;
  /**
   * Allocates and checks the addresses of network attachments (over libvirt). Without it
   * (`validate`), attachments keep the static ip they give, and the others get none.
   */
  addresses?: Pick<AddressBook, 'resolve'>;
  /** Write the generated /etc files of containers on networks into the state directory (`plan` only names them). */
  etcFiles?: boolean;
  /** The libvirt network of every container whose settings have no `networks` (daemon setting). */
  defaultNetwork?: string;
  /** Host bridges a settings attachment may name (daemon setting). */
  bridgeAllowList?: readonly string[];
  /** The cap of each of a container's two log files (daemon setting), carried by its definition. */
  logFileBytes?: number;
}

export interface DesiredState {
  desired: DesiredDomain[];
  failed: EntryFailure[];
  /** Entries still being read or unpacked when the pass stopped waiting for them. */
  busy?: { entry: string; domainName: string }[];
  /** Image entries marked image-only: a base for settings entries, no domain of their own. */
  imagesOnly?: string[];
  /** Settings entry -> the image entry it names, for each whose settings could be read. */
  uses?: Map<string, string>;
}

/** An image entry whose settings say it is an image only. */
export const IMAGE_ONLY = Symbol('image only');

/** A container whose image entry is still being copied in: left as it is, taken once the image is complete. */
class ImageSettling extends Error {}

/** Image bundles live here: one directory per domain, in it one per image version. */
export function imageBundlesDir(stateDir: string): string {
  return join(stateDir, 'bundles');
}

/** gzip-compressed image archives, inflated (image/inflate.ts): kept while the archive is unchanged. */
export function inflatedArchivesDir(stateDir: string): string {
  return join(stateDir, 'archives');
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
  const imagesOnly: string[] = [];
  const uses = new Map<string, string>();
  const cgroupVersion = detectCgroupVersion();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, entries.length) }, async () => {
      while (next < entries.length) {
        const entry = entries[next++]!;
        try {
          const d = await runStep(opts.steps, entry.name, `${entry.path}: reading${entry.kind === 'bundle' ? '' : ' and unpacking'}`, (signal) =>
            desiredOfEntry(entry, { ...opts, signal }, cgroupVersion, uses),
          );
          if (d === DETACHED) busy.push({ entry: entry.name, domainName: entry.domainName });
          else if (d === IMAGE_ONLY) imagesOnly.push(entry.name);
          else desired.push(d);
        } catch (e) {
          if (e instanceof ImageSettling) busy.push({ entry: entry.name, domainName: entry.domainName });
          else failed.push({ entry: entry.name, domainName: entry.domainName, error: errorMessage(e) });
        }
      }
    }),
  );
  const byName = (a: { entry: string }, b: { entry: string }) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0);
  return { desired: desired.sort(byName), failed: failed.sort(byName), busy: busy.sort(byName), imagesOnly: imagesOnly.sort(), uses };
}

/** The domain of one entry (an image-only entry has none: see `desiredOfEntry`). */
export async function desiredDomain(entry: SpoolEntry, opts: DesiredOptions, cgroupVersion: 1 | 2): Promise<DesiredDomain> {
  const d = await desiredOfEntry(entry, opts, cgroupVersion);
  if (d === IMAGE_ONLY) throw new InputError('is an image only (its settings say imageOnly): it has no domain of its own', { file: entry.path });
  return d;
}

/** Where an entry's bundle comes from, and what of the image its settings apply over. */
interface EntryBundle {
  bundleDir: string;
  imageDigest?: string;
  image?: UnpackResult;
  imageTree?: string;
  warnings: string[];
}

/**
 * Entry -> bundle -> settings applied -> trust checks -> domain: the one pipeline of the daemon,
 * `sync --once`, `plan` and `validate`. `uses` learns which image entry a settings entry names.
 */
export async function desiredOfEntry(
  entry: SpoolEntry,
  opts: DesiredOptions,
  cgroupVersion: 1 | 2,
  uses?: Map<string, string>,
): Promise<DesiredDomain | typeof IMAGE_ONLY> {
  const read = await settingsOf(entry);
  if (read?.settings.image !== undefined) uses?.set(entry.name, read.settings.image);
  if ((entry.kind === 'layout' || entry.kind === 'archive') && read?.settings.imageOnly === true) return IMAGE_ONLY;
  const from = await entryBundle(entry, read, opts);
  if (entry.kind !== 'bundle') return bundleDomain(entry, from, from.bundleDir, read, opts, cgroupVersion);
  // a spool bundle, held open from here on: read and checked as it was when opened, whatever its name leads to later
  const held = await openSpoolEntry(entry.path, 'directory').catch((e: unknown) => {
    throw e instanceof UnreadableFile ? new InputError(e.message, { file: entry.path }) : e;
  });
  try {
    return await bundleDomain(entry, from, held, read, opts, cgroupVersion);
  } finally {
    await held.close();
  }
}

/**
 * The domain of an entry's bundle: a spool bundle held open (`dir`), or one in the state
 * directory (ours: by path). `from.bundleDir` is its path, for messages and the domain.
 */
async function bundleDomain(
  entry: SpoolEntry,
  from: EntryBundle,
  dir: HeldEntry | string,
  read: ReadSettings | undefined,
  opts: DesiredOptions,
  cgroupVersion: 1 | 2,
): Promise<DesiredDomain> {
  const { bundleDir } = from;
  const warnings = [...from.warnings];
  const bundle = typeof dir === 'string' ? await readBundleConfig(dir) : await readBundleConfigIn(dir, bundleDir);
  const { configPath } = bundle;
  // what only the operator's settings say (networks, published ports, stop policy): not the bundle's (network/entry.ts)
  const { config, warnings: dropped } = withoutBundleSay(bundle.config, configPath);
  warnings.push(...dropped);
  let effective = config;
  let notInForce: string[] = [];
  if (read !== undefined) {
    // the rootfs as the trust check resolves it: user names are looked up there
    const root = await checkBundlePaths(config, dir, opts.bindAllowList ?? [], configPath);
    const exec = from.image?.exec;
    const applied = await applySettings(config, read.settings, {
      file: read.file,
      domainName: entry.domainName,
      bundleDir: dir,
      rootfs: root.rootfsAt,
      ...(exec !== undefined ? { image: { entrypoint: exec.Entrypoint ?? null, cmd: exec.Cmd ?? null, env: exec.Env ?? [] } } : {}),
      bindAllowList: opts.bindAllowList ?? [],
    });
    effective = applied.config;
    notInForce = applied.notInForce;
  }
  // where root.path and bind sources really lead (a link out of the bundle is refused)
  const paths = await runFromCopy(await checkBundlePaths(effective, dir, opts.bindAllowList ?? [], configPath), entry, opts);
  // a passed-through host device or interface hands over host resources like a bind of '/'
  checkHostDevices(effective, configPath, opts.hostDeviceAllowList ?? {});
  // volumes are mounted from ocivirt's own directory, so after the trust check (volumes/mounts.ts)
  const vol = await entryVolumes({
    domainName: entry.domainName,
    ...(read !== undefined ? { settings: read.settings, settingsFile: read.file } : {}),
    ...(from.image?.exec.Volumes !== undefined ? { imageVolumes: from.image.exec.Volumes } : {}),
    config: effective,
    // a new volume is seeded from the pristine image when there is one: nothing runs on it
    seedRoot: from.imageTree !== undefined ? join(from.imageTree, 'rootfs') : paths.rootfsAt,
    ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
  }).catch((e: unknown) => {
    throw e instanceof InputError ? e.inFile(entry.path) : e; // the image's config says it
  });
  warnings.push(...vol.warnings);
  const checked = withCheckedPaths(effective, paths);
  if (vol.volumes.length) checked.mounts = [...(checked.mounts ?? []), ...volumeMounts(vol.volumes)];
  const attached = await withNetworks(checked, entry.domainName, read, configPath, opts);
  const etc = await generatedEtc(entry, checked, attached, paths.rootfsAt, opts);
  warnings.push(...etc.warnings);
  const { imageDigest } = from;
  const result = fromNative(checked, {
    bundleDir,
    file: configPath,
    name: entry.domainName,
    strict: opts.strict === true,
    cgroupVersion,
    owner: {
      entry: entry.name,
      ...(opts.instance !== undefined ? { instance: opts.instance } : {}),
      ...(imageDigest !== undefined ? { imageDigest } : {}),
      ...(read !== undefined ? { settingsDigest: read.digest } : {}),
    },
    resolveExecutable: rootfsExecutableResolver(paths.rootfsAt),
    hostDevice: statHostDevice,
    ...(etc.mounts.length ? { ownMounts: etc.mounts } : {}),
    // every domain runs ocivirt's init shim, from its directory in the state directory
    ...(opts.stateDir !== undefined ? { shim: { stateDir: opts.stateDir, ...(opts.logFileBytes !== undefined ? { logFileBytes: opts.logFileBytes } : {}) } } : {}),
  });
  checkInterfaces(result.domain, attached.length, configPath);
  // what libvirt would only refuse at start (after a timeout) is refused before the define
  const problems = await startProblems(result.domain, paths.rootfs, paths.rootfsAt);
  if (problems.length) throw new InputError(problems.map((p) => p.reason).join('; '), { file: configPath, field: problems[0]!.field });
  warnings.push(...result.warnings);
  return {
    entry: entry.name,
    domainName: entry.domainName,
    domain: result.domain,
    ...startDecision(effective.annotations?.[START_ANNOTATION], opts.startPolicy ?? 'annotation'),
    ...(imageDigest !== undefined ? { imageDigest } : {}),
    ...(notInForce.length ? { notInForce } : {}),
    ...(from.imageTree !== undefined ? { imageTree: from.imageTree } : {}),
    warnings,
  };
}

/**
 * A spool bundle runs from a copy of its rootfs in the state directory (bundle-copy.ts); without
 * a state directory (`validate`), and for trees already ours, the paths stay as checked.
 */
async function runFromCopy(paths: BundlePaths, entry: SpoolEntry, opts: DesiredOptions): Promise<BundlePaths> {
  if (entry.kind !== 'bundle' || opts.stateDir === undefined) return paths;
  const rootfs = await copiedRootfs(paths.rootfsAt, {
    domainDir: join(imageBundlesDir(opts.stateDir), entry.domainName),
    entry: entry.path,
    signal: opts.signal,
    log: opts.log,
  });
  return { ...paths, rootfs, rootfsAt: rootfs };
}

/**
 * The generated /etc files of a container on networks (network/etc-files.ts): written into the
 * state directory when the pass may write (`opts.etcFiles`), and the binds the rootfs can take.
 */
async function generatedEtc(entry: SpoolEntry, config: RuntimeConfig, attached: readonly ResolvedAttachment[], rootfsAt: string, opts: DesiredOptions): Promise<EtcPlan> {
  // on libvirt networks (their dnsmasq is the name server); a host bridge's DNS is not ours to know
  const withAddress = attached.filter((a): a is ResolvedAttachment & { network: string; ip: string; gateway: string } => a.network !== undefined && a.ip !== undefined && a.gateway !== undefined);
  if (opts.stateDir === undefined || !withAddress.length) return { mounts: [], warnings: [] };
  const dir = etcDirOf(opts.stateDir, entry.domainName);
  const taken = (config.mounts ?? []).map((m) => posix.normalize(m.destination).replace(/(.)\/+$/, '$1'));
  const plan = await planEtcMounts(rootfsAt, config.root?.readonly === true, dir, taken);
  if (opts.etcFiles === true && plan.mounts.length) {
    const input = { domainName: entry.domainName, entryStem: entryStem(entry.name), ...(config.hostname !== undefined ? { hostname: config.hostname } : {}), attachments: withAddress };
    await writeEtcFiles(dir, etcContents(input));
  }
  return plan;
}

/** The entry's settings file (its own, or the one beside it), read and checked for what it belongs to. */
async function settingsOf(entry: SpoolEntry): Promise<ReadSettings | undefined> {
  const path = entry.kind === 'settings' ? entry.path : entry.settings?.path;
  if (path === undefined) return undefined;
  const read = await readEntrySettings(path);
  checkRole(read.settings, entry.kind === 'bundle' ? 'bundle' : entry.kind === 'settings' ? 'container' : 'image', read.file);
  return read;
}

/** The bundle an entry runs: its own directory, its image unpacked, or a copy of the image it names. */
async function entryBundle(entry: SpoolEntry, read: ReadSettings | undefined, opts: DesiredOptions): Promise<EntryBundle> {
  if (entry.kind === 'bundle') return { bundleDir: entry.path, warnings: [] };
  if (opts.stateDir === undefined) throw new Error(`${entry.path}: an image entry needs a state directory (--state) to unpack into`);
  const s = read?.settings;
  // unset options stay undefined: unpackImage reads each with `=== true`, `?.` or a truthiness test
  const unpackOpts: UnpackOptions = {
    ref: s?.ref,
    platform: s?.platform,
    allowDevices: opts.allowDevices,
    limits: opts.unpackLimits,
    inflateCacheDir: inflatedArchivesDir(opts.stateDir),
    log: opts.log,
    signal: opts.signal,
  };
  const bundles = join(imageBundlesDir(opts.stateDir), entry.domainName);
  if (entry.kind !== 'settings') {
    // one directory per image version: a running domain keeps its tree while a new one is unpacked
    const unpacked = await unpackImage(entry.path, bundles, { ...unpackOpts, versioned: true }).catch(selectionIn(read, entry));
    return { bundleDir: unpacked.bundleDir, imageDigest: unpacked.manifestDigest, image: unpacked, warnings: unpacked.warnings };
  }
  const image = await imageEntryNamed(read!, opts);
  if (opts.settled !== undefined && !opts.settled(image.name)) throw new ImageSettling();
  const shared = await unpackShared(image, opts.stateDir, unpackOpts).catch(selectionIn(read, entry));
  const bundleDir = await containerTree(shared, bundles, { signal: opts.signal, log: opts.log });
  return { bundleDir, imageDigest: shared.manifestDigest, image: shared, imageTree: shared.bundleDir, warnings: shared.warnings };
}

/** The image entry a settings entry names, as the spool scan sees it: an image layout or archive. */
async function imageEntryNamed(read: ReadSettings, opts: DesiredOptions): Promise<SpoolEntry> {
  const name = read.settings.image!;
  const where = { file: read.file, field: 'image' };
  if (opts.spoolDir === undefined) throw new InputError('a container of a spool image needs the spool it is in', where);
  const found = await inspectEntry(opts.spoolDir, name, { prefix: opts.prefix ?? '' });
  if (found === null) throw new InputError(`${JSON.stringify(name)} is not a spool entry name`, where);
  if ('reason' in found)
    throw new InputError(
      /\(ENOENT\)$/.test(found.reason) ? `no entry ${JSON.stringify(name)} in the spool` : `the image entry ${JSON.stringify(name)} cannot be used: ${found.reason}`,
      where,
    );
  if (found.kind !== 'layout' && found.kind !== 'archive')
    throw new InputError(`${JSON.stringify(name)} is a ${found.kind === 'bundle' ? 'runtime bundle' : 'settings file'}, not an image entry (an OCI layout or an image archive)`, where);
  return found;
}

/**
 * Which image of an input the settings choose is theirs to say: a ref or platform the image
 * does not offer names the settings file and the key; otherwise the hint says which key of the
 * settings file chooses (a spool entry has no --ref).
 */
function selectionIn(read: ReadSettings | undefined, entry: SpoolEntry) {
  return (e: unknown): never => {
    if (!(e instanceof SelectionError)) throw e;
    const file = read?.file;
    if (file !== undefined && e.unmatched && read?.settings[e.choice] !== undefined)
      throw new InputError(`${e.describe(undefined)} (${e.file ?? 'the image'})`, { file, field: e.choice });
    const settingsName = file !== undefined ? basename(file) : `${entryStem(entry.name)}${SETTINGS_SUFFIX}`;
    const hint: ChoiceHint = (choice, value) => (value === undefined ? `choose one with "${choice}" in ${settingsName}` : `set "${choice}" to "${value}" in ${settingsName}`);
    throw new InputError(e.describe(hint), { ...(e.file !== undefined ? { file: e.file } : {}), ...(e.field !== undefined ? { field: e.field } : {}) });
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
