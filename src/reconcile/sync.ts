/**
 * One reconcile pass: desired (spool) vs actual (libvirt) -> plan -> apply -> collect unused
 * image bundles -> status. Level-triggered: everything is recomputed each pass, so a missed
 * event or a crash costs one pass, never correctness. All ocivirt keeps besides libvirt's
 * metadata is the status file (written atomically) and the image bundles (rebuilt on demand).
 *
 * `sync --once`, `plan` and the daemon share one pass. The daemon's is limited to what the
 * watcher has seen complete: an entry that is new or changing and not yet reported complete is
 * "settling": it is not read, and its domain (if it has one) is left exactly as it is. So a
 * half-copied bundle is never defined, and an entry being rewritten in place never loses its
 * domain. Scope `all` is the full resync (every entry, every managed domain, unused image
 * bundles collected); a set of names is the per-entry pass the watcher triggers (see scope.ts).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomically } from '../fsroot/atomic.js';
import type { Clock } from '../clock.js';
import { uuidV5 } from '../convert/identity.js';
import type { DriftPolicy, RemovePolicy, StartPolicy, UpdatePolicy } from '../config/index.js';
import { DomainNotFoundError, LibvirtUnavailableError, type LibvirtPort } from '../libvirt/port.js';
import { parseDomainXml } from '../xml/parse.js';
import { scanSpool, type HostDeviceAllowList } from '../spool/index.js';
import type { EventLogger } from '../log.js';
import { actualState, foreignReason, type ActualState, type Instance } from './actual.js';
import { applyPlan, type ApplyOptions, type DomainLocks, type ItemResult } from './apply.js';
import { desiredOf, inflatedArchivesDir, type DesiredOptions, type DesiredState } from './desired.js';
import { collectInflated } from '../image/inflate.js';
import { ensureInstanceId, readInstanceId } from './instance.js';
import { HandEdits } from './hand-edits.js';
import { PendingChanges, PendingStarts } from './pending.js';
import { operatorStopsOf } from './operator.js';
import { runtimesOf, type RuntimeStatus } from './runtime.js';
import { computePlan, definitionChanges, type PlanItem } from './plan.js';
import { collectImageBundles } from './collect.js';
import { domainsOfScope, inspectSome, widenScope } from './scope.js';
import { collectSharedImages } from './images.js';
import { AddressBook } from '../network/addresses.js';
import { syncDnsNames } from '../network/dns.js';
import type { StepBudget } from './steps.js';

export { collectImageBundles };

export interface SyncOptions {
  spoolDir: string;
  stateDir?: string;
  /**
   * This instance's id (the daemon reads it once at start); by default the one kept in the state
   * directory (instance.ts), made by the first pass that may write, or, without a state
   * directory, one derived from the spool's path.
   */
  instance?: string;
  log: EventLogger;
  prefix?: string;
  startPolicy?: StartPolicy;
  updatePolicy?: UpdatePolicy;
  removePolicy?: RemovePolicy;
  driftPolicy?: DriftPolicy;
  strict?: boolean;
  bindAllowList?: readonly string[];
  hostDeviceAllowList?: HostDeviceAllowList;
  /** The network of containers whose settings have no `networks` (network/entry.ts). */
  defaultNetwork?: string;
  /** Host bridges a settings attachment may name. */
  bridgeAllowList?: readonly string[];
  allowDevices?: boolean;
  unpackLimits?: { maxBytes: number; maxEntries: number };
  concurrency?: number;
  stopTimeoutMs?: number;
  attempts?: number;
  retryDelayMs?: number;
  locks?: DomainLocks;
  /** Retry delays run on it (a fake one in tests). */
  clock?: Clock;
  /** Each entry's steps: deadline, patience, cancellation (steps.ts). */
  steps?: StepBudget;
  /** The host-wide lock and registry of address allocation (default /run/lock/ocivirt-addresses; tests use their own). */
  addressLockDir?: string;
  /** The cap of each of a container's two log files (the daemon setting; part of each desired definition). */
  logFileBytes?: number;
}

export interface SyncResult {
  plan: PlanItem[];
  results: ItemResult[];
  failed: ItemResult[];
  /** Image bundle directories removed from the state directory. */
  collected: string[];
  durationMs: number;
}

export type PassScope = 'all' | ReadonlySet<string>;

export interface PassSpec {
  scope: PassScope;
  /** May this entry be read now? (the daemon: reported complete by the watcher, not changing since). */
  settled: (entry: string) => boolean;
  /**
   * Entry -> domain name, as last seen; the pass keeps it up to date. A per-entry pass uses it to
   * find name collisions without listing the whole spool.
   */
  known: Map<string, string>;
  /** Log the unpacker's events (image.*): the daemon does; `sync --once` and `plan` never have. */
  unpackEvents: boolean;
  /**
   * Settings entry -> the image entry it names, as last read; the pass keeps it up to date. A
   * per-entry pass over an image entry takes the containers of that image along.
   */
  uses?: Map<string, string>;
}

/**
 * Entries in scope left alone because they are still settling, or (`busy`) because a step on
 * them was still running when the pass stopped waiting for it.
 */
export type Settling = { entry: string; domain: string; busy?: true }[];

interface PlannedPass {
  plan: PlanItem[];
  settling: Settling;
  /** Every entry read and every managed domain seen: only then are unused bundles and stale markers known. */
  complete: boolean;
  /** The shared image trees the containers of this pass were made from (kept by collection). */
  imageTrees: Set<string>;
  /** The names the pass looked at: its scope, widened to paired and dependent items (scope.ts). */
  scope: PassScope;
  /** When it started reading: inflated archives not used since are unused (image/inflate.ts). */
  startedAt: number;
}

export const STATUS_FILE = 'status.json';

/** The pending-start markers of a pass (in the state directory), when it has one. */
export function pendingStartsOf(opts: SyncOptions): PendingStarts | undefined {
  return opts.stateDir === undefined ? undefined : new PendingStarts(join(opts.stateDir, 'pending-start'));
}

/** What running domains' new definitions leave for their next start (in the state directory). */
export function pendingChangesOf(stateDir: string | undefined): PendingChanges | undefined {
  return stateDir === undefined ? undefined : new PendingChanges(join(stateDir, 'pending-change'));
}

/** A start the operator's stop came after (`ocivirt stop`, `virsh destroy`) is not finished for them. */
async function unlessOperatorStopped(stateDir: string | undefined, starts: Set<string> | undefined): Promise<Set<string> | undefined> {
  if (stateDir === undefined || starts === undefined || starts.size === 0) return starts;
  const stopped = await operatorStopsOf(stateDir).list();
  return new Set([...starts].filter((d) => !stopped.has(d)));
}

/** The addresses of network attachments (in the state directory), when the pass has one; `plan` only looks. */
export function addressBookOf(port: LibvirtPort, opts: SyncOptions, dryRun = false): AddressBook | undefined {
  return opts.stateDir === undefined ? undefined : new AddressBook(port, opts.stateDir, { dryRun, ...(opts.addressLockDir !== undefined ? { lockDir: opts.addressLockDir } : {}) });
}

/** The hand edits already logged (in the state directory), when the pass has one. */
export function handEditsOf(opts: SyncOptions): HandEdits | undefined {
  return opts.stateDir === undefined ? undefined : new HandEdits(join(opts.stateDir, 'hand-edits'));
}

// The option objects below carry unset members as undefined: each callee reads them with `??`,
// `?.` or an `!== undefined` test, so undefined means "absent" there.

function desiredOptionsOf(opts: SyncOptions, spec: PassSpec, self: Instance, addresses: AddressBook | undefined, mayWrite: boolean): DesiredOptions {
  return {
    addresses,
    etcFiles: mayWrite,
    spoolDir: opts.spoolDir,
    settled: spec.settled,
    prefix: opts.prefix,
    instance: self.id,
    stateDir: opts.stateDir,
    startPolicy: opts.startPolicy,
    strict: opts.strict,
    bindAllowList: opts.bindAllowList,
    hostDeviceAllowList: opts.hostDeviceAllowList,
    defaultNetwork: opts.defaultNetwork,
    bridgeAllowList: opts.bridgeAllowList,
    allowDevices: opts.allowDevices,
    unpackLimits: opts.unpackLimits,
    logFileBytes: opts.logFileBytes,
    log: spec.unpackEvents ? opts.log : undefined,
    steps: opts.steps,
  };
}

function applyOptionsOf(opts: SyncOptions, pendingStarts: PendingStarts | undefined): ApplyOptions {
  return {
    stateDir: opts.stateDir,
    log: opts.log,
    locks: opts.locks,
    pendingStarts,
    pendingChanges: pendingChangesOf(opts.stateDir),
    handEdits: handEditsOf(opts),
    updatePolicy: opts.updatePolicy,
    concurrency: opts.concurrency,
    stopTimeoutMs: opts.stopTimeoutMs,
    attempts: opts.attempts,
    retryDelayMs: opts.retryDelayMs,
    clock: opts.clock,
    steps: opts.steps,
  };
}

/** The spec of `sync --once` and `plan`: everything, all of it settled. */
function everything(): PassSpec {
  return { scope: 'all', settled: () => true, known: new Map(), unpackEvents: false };
}

/** The spool entries in scope: the settled ones read into desired state, the others settling. */
async function readSpool(opts: SyncOptions, spec: PassSpec, self: Instance, addresses: AddressBook | undefined, mayWrite: boolean) {
  const { known } = spec;
  const uses = (spec.uses ??= new Map());
  const scope: PassScope = spec.scope === 'all' ? 'all' : widenScope(spec.scope, uses);
  const prefix = opts.prefix ?? '';
  const scan = scope === 'all' ? await scanSpool(opts.spoolDir, { prefix }) : await inspectSome(opts.spoolDir, scope, prefix, known, spec.scope as ReadonlySet<string>);
  if (scope === 'all') known.clear();
  else for (const name of scope) known.delete(name);
  for (const x of [...scan.entries, ...scan.refused]) if (x.domainName !== undefined) known.set(x.name, x.domainName);

  const inScope = (x: { name: string }) => scope === 'all' || scope.has(x.name);
  const entries = scan.entries.filter(inScope);
  const refused = scan.refused.filter(inScope);
  const domainOf = new Map<string, string>(); // entry -> domain, for every entry in scope
  for (const x of [...entries, ...refused]) if (x.domainName !== undefined) domainOf.set(x.name, x.domainName);
  // an entry and its settings file settle together: a change of either is a change of the entry
  const settled = (x: { name: string; settings?: { name: string } }) => spec.settled(x.name) && (x.settings === undefined || spec.settled(x.settings.name));
  const settling: Settling = [...entries, ...refused].filter((x) => !settled(x)).map((x) => ({ entry: x.name, domain: x.domainName ?? '' }));
  const want = await desiredOf(entries.filter(settled), refused.filter(settled), desiredOptionsOf(opts, spec, self, addresses, mayWrite));
  for (const b of want.busy ?? []) settling.push({ entry: b.entry, domain: b.domainName, busy: true });
  if (scope === 'all') uses.clear();
  else for (const name of scope) uses.delete(name);
  for (const [entry, image] of want.uses ?? []) uses.set(entry, image);
  return { want, domainOf, settling, scope };
}

/**
 * Who this pass acts as. A pass that may write makes the instance id when there is none yet;
 * `plan` only reads it (without one it owns no stamped domain yet).
 */
export async function instanceOf(opts: SyncOptions, mayWrite: boolean): Promise<Instance> {
  const where = { spoolDir: opts.spoolDir, ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}) };
  if (opts.instance !== undefined) return { id: opts.instance, ...where };
  if (opts.stateDir === undefined) return { id: uuidV5(`spool:${resolve(opts.spoolDir)}`), ...where };
  return { id: mayWrite ? await ensureInstanceId(opts.stateDir) : await readInstanceId(opts.stateDir), ...where };
}

/** Desired and actual state in scope and the plan between them; reads only (the instance id aside). */
async function planPass(port: LibvirtPort, opts: SyncOptions, spec: PassSpec, mayWrite: boolean): Promise<PlannedPass> {
  const { scope } = spec;
  const prefix = opts.prefix ?? '';
  const startedAt = Date.now() - 1000; // a file's mtime may round down below the clock
  const self = await instanceOf(opts, mayWrite);
  let read: Awaited<ReturnType<typeof readSpool>>;
  let have: ActualState;
  const addresses = addressBookOf(port, opts, !mayWrite);
  if (scope === 'all') [read, have] = await Promise.all([readSpool(opts, spec, self, addresses, mayWrite), actualState(port, self, prefix)]);
  else {
    read = await readSpool(opts, spec, self, addresses, mayWrite);
    have = await domainsOfScope(port, self, read.scope as ReadonlySet<string>, read.domainOf, prefix);
  }
  reportForeign(have, read.want, scope === 'all', opts.log);
  const { want, settling } = read;
  // a settling entry's domain is left as it is: neither updated nor deleted
  const settlingEntries = new Set(settling.map((s) => s.entry));
  const settlingDomains = new Set(settling.map((s) => s.domain));
  for (const [name, m] of have.managed) if (settlingEntries.has(m.owner.entry) || settlingDomains.has(name)) have.managed.delete(name);
  // starts a crash cut short (defined, not yet started) are finished
  const pendingStarts = await unlessOperatorStopped(opts.stateDir, await pendingStartsOf(opts)?.list());
  const plan = computePlan(want, have, { removePolicy: opts.removePolicy, driftPolicy: opts.driftPolicy, pendingStarts });
  const imageTrees = new Set(want.desired.flatMap((d) => (d.imageTree !== undefined ? [d.imageTree] : [])));
  return { plan, settling, complete: scope === 'all' && settling.length === 0, imageTrees, scope: read.scope, startedAt };
}

/**
 * Domains of other instances are never touched; the pass says so when an entry of ours names
 * one (the entry fails), and a full pass for domains made before instance ids that this instance
 * does not adopt (nobody else may know they are stale).
 */
function reportForeign(have: ActualState, want: DesiredState, full: boolean, log: EventLogger): void {
  const claimedBy = new Map([...want.desired, ...want.failed].map((d) => [d.domainName, d.entry]));
  for (const f of have.foreign.values()) {
    const entry = claimedBy.get(f.name);
    if (entry === undefined && !(full && f.owner.instance === undefined)) continue;
    const fields = { domain: f.name, ...(entry !== undefined ? { entry } : {}), owner: { instance: f.owner.instance ?? null, entry: f.owner.entry, bundle: f.owner.bundle ?? null } };
    log.warn('domain.foreign', fields, foreignReason(f));
  }
}

/** Apply a planned pass; a complete one also collects unused image bundles and stale pending-start markers. */
async function applyPass(port: LibvirtPort, opts: SyncOptions, planned: PlannedPass): Promise<{ results: ItemResult[]; collected: string[] }> {
  const pendingStarts = pendingStartsOf(opts);
  const addresses = addressBookOf(port, opts);
  const results = await applyPlan(port, planned.plan, { ...applyOptionsOf(opts, pendingStarts), addresses });
  // containers reach each other by name: the networks' DNS entries follow the addresses (a full pass: whatever happened meanwhile)
  if (addresses !== undefined && (planned.scope === 'all' || results.some((r) => r.ok && r.item.action !== 'nothing' && r.item.action !== 'fail')))
    await syncDnsNames(port, addresses, opts.stateDir!, opts.log);
  if (!planned.complete || results.some((r) => r.busy)) return { results, collected: [] };
  const collected =
    opts.stateDir !== undefined
      ? [
          ...(await collectImageBundles(port, opts.stateDir, results, opts.log)),
          ...(await collectSharedImages(opts.stateDir, planned.imageTrees, opts.log)),
          ...(await collectInflated(inflatedArchivesDir(opts.stateDir), planned.startedAt)),
        ]
      : [];
  if (pendingStarts !== undefined) {
    // markers of domains this pass no longer knows (entry and domain gone) are stale
    const known = new Set(results.filter((r) => !(r.item.action === 'delete' && r.ok)).map((r) => r.item.domain));
    for (const name of await pendingStarts.list()) if (!known.has(name)) await pendingStarts.remove(name);
    const stopped = operatorStopsOf(opts.stateDir!);
    for (const name of await stopped.list()) if (!known.has(name)) await stopped.remove(name);
    await dropStalePendingChanges(port, pendingChangesOf(opts.stateDir)!, known);
  }
  return { results, collected };
}

/**
 * A pending change is over once its domain is gone or no longer runs (it starts with the new
 * definition), or once the definition it runs with has it (restarted while no daemon heard it):
 * what is left pending is what still differs between the running and the persistent definitions.
 */
async function dropStalePendingChanges(port: LibvirtPort, pending: PendingChanges, known: ReadonlySet<string>): Promise<void> {
  for (const [name, keys] of await pending.all()) {
    try {
      if (!known.has(name) || (await port.state(name)) !== 'running') {
        await pending.remove(name);
        continue;
      }
      const differ = new Set(definitionChanges(parseDomainXml(await port.inactiveXml(name)), parseDomainXml(await port.liveXml(name))).map((c) => c.key));
      const left = keys.filter((k) => differ.has(k));
      if (left.length < keys.length) await pending.replace(name, left);
    } catch (e) {
      if (e instanceof DomainNotFoundError) await pending.remove(name);
      else if (e instanceof LibvirtUnavailableError) throw e;
      // a definition that does not parse: left as it is
    }
  }
}

/** The daemon's pass over `spec.scope`; the caller writes the status file. */
export async function syncPass(port: LibvirtPort, opts: SyncOptions, spec: PassSpec): Promise<{ results: ItemResult[]; settling: Settling; scope: PassScope }> {
  const planned = await planPass(port, opts, spec, true);
  const { results } = await applyPass(port, opts, planned);
  return { results, settling: planned.settling, scope: planned.scope };
}

async function planFullPass(port: LibvirtPort, opts: SyncOptions, mayWrite: boolean): Promise<PlannedPass> {
  const planned = await planPass(port, opts, everything(), mayWrite);
  const { plan } = planned;
  opts.log.info('plan.computed', {
    create: plan.filter((i) => i.action === 'create').length,
    update: plan.filter((i) => i.action === 'update').length,
    start: plan.filter((i) => i.action === 'start').length,
    delete: plan.filter((i) => i.action === 'delete').length,
    nothing: plan.filter((i) => i.action === 'nothing').length,
    fail: plan.filter((i) => i.action === 'fail').length,
  });
  return planned;
}

/** The plan of a full pass (`ocivirt plan`); reads only. */
export async function computeSyncPlan(port: LibvirtPort, opts: SyncOptions): Promise<PlanItem[]> {
  return (await planFullPass(port, opts, false)).plan;
}

/** `sync --once`: a full pass, everything settled, then the status file. */
export async function syncOnce(port: LibvirtPort, opts: SyncOptions): Promise<SyncResult> {
  const t0 = Date.now();
  const planned = await planFullPass(port, opts, true);
  const { results, collected } = await applyPass(port, opts, planned);
  if (opts.stateDir !== undefined) await writeStatus(opts.stateDir, results, port);
  const failed = results.filter((r) => !r.ok);
  const durationMs = Date.now() - t0;
  opts.log.info('sync.completed', {
    durationMs,
    entries: results.filter((r) => r.item.action !== 'delete').length,
    changed: results.filter((r) => r.ok && r.item.action !== 'nothing' && r.item.action !== 'fail').length,
    failed: failed.length,
  });
  return { plan: planned.plan, results, failed, collected, durationMs };
}

/** One entry in the status file: the last pass's outcome, and what its domain is doing (runtime.ts). */
export interface EntryStatus extends RuntimeStatus {
  entry: string;
  domain: string;
  action: string;
  result: 'ok' | 'pending' | 'failed';
  reason: string;
  error?: string;
  /** What of the domain's definition waits for its next start (compared keys, e.g. `os.initenv`). */
  pendingChange?: string[];
  at: string;
}

/**
 * `<stateDir>/status.json`, replaced atomically and durably. With `port`, each domain's runtime
 * status (state, exit code, restarts, since) is asked of libvirt and the state directory.
 */
export async function writeStatus(stateDir: string, results: readonly ItemResult[], port?: LibvirtPort): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const at = new Date().toISOString();
  const pendingChanges = (await pendingChangesOf(stateDir)?.all()) ?? new Map<string, string[]>();
  const runtimes = port === undefined ? new Map<string, RuntimeStatus>() : await runtimesOf(port, stateDir, results.map((r) => r.item.domain), new Set(pendingChanges.keys()));
  const entries: EntryStatus[] = results.map((r) => {
    const pendingChange = r.item.domain === '' ? undefined : pendingChanges.get(r.item.domain);
    const runtime = runtimes.get(r.item.domain) ?? { state: r.item.domain === '' ? 'absent' : 'unknown', exitCode: null, signal: null, restarts: 0, since: null };
    return {
      entry: r.item.entry,
      domain: r.item.domain,
      action: r.item.action,
      result: !r.ok ? 'failed' : r.pending || pendingChange !== undefined ? 'pending' : 'ok',
      reason: r.item.reason,
      ...(r.error !== undefined ? { error: r.error } : {}),
      ...(pendingChange !== undefined ? { pendingChange } : {}),
      ...runtime,
      at,
    };
  });
  await writeFileAtomically(join(stateDir, STATUS_FILE), JSON.stringify({ updated: at, entries }, null, 2) + '\n', 0o600);
}

/** The pass options a loaded configuration gives (the CLI and the daemon share this). */
export function syncOptionsFromConfig(
  config: {
    spoolDir: string;
    stateDir: string;
    namePrefix: string;
    startPolicy: StartPolicy;
    updatePolicy: UpdatePolicy;
    removePolicy: RemovePolicy;
    driftPolicy: DriftPolicy;
    strictConversion: boolean;
    bindAllowList: readonly string[];
    hostDeviceAllowList: HostDeviceAllowList;
    defaultNetwork: string;
    bridgeAllowList: readonly string[];
    allowDevices: boolean;
    unpackLimits: { maxBytes: number; maxEntries: number };
    concurrency: number;
    stopTimeoutSec: number;
    logFileBytes: number;
  },
  log: EventLogger,
): SyncOptions {
  return {
    spoolDir: config.spoolDir,
    stateDir: config.stateDir,
    log,
    prefix: config.namePrefix,
    startPolicy: config.startPolicy,
    updatePolicy: config.updatePolicy,
    removePolicy: config.removePolicy,
    driftPolicy: config.driftPolicy,
    strict: config.strictConversion,
    bindAllowList: config.bindAllowList,
    hostDeviceAllowList: config.hostDeviceAllowList,
    ...(config.defaultNetwork !== '' ? { defaultNetwork: config.defaultNetwork } : {}),
    bridgeAllowList: config.bridgeAllowList,
    allowDevices: config.allowDevices,
    unpackLimits: config.unpackLimits,
    concurrency: config.concurrency,
    stopTimeoutMs: config.stopTimeoutSec * 1000,
    logFileBytes: config.logFileBytes,
  };
}
