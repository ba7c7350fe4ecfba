/**
 * One reconcile pass: desired (spool) vs actual (libvirt) -> plan -> apply -> collect unused
 * image bundles -> status. Level-triggered: everything is recomputed each pass, so a missed
 * event or a crash costs one pass, never correctness. All ocivirt keeps besides libvirt's
 * metadata is the status file (written atomically) and the image bundles (rebuilt on demand).
 */
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { DriftPolicy, RemovePolicy, StartPolicy, UpdatePolicy } from '../config/index.js';
import type { LibvirtPort } from '../libvirt/port.js';
import type { HostDeviceAllowList } from '../spool/index.js';
import type { EventLogger } from '../log.js';
import { actualState } from './actual.js';
import { applyPlan, type DomainLocks, type ItemResult } from './apply.js';
import { desiredState } from './desired.js';
import { HandEdits } from './hand-edits.js';
import { PendingStarts } from './pending.js';
import { computePlan, type PlanItem } from './plan.js';
import { collectImageBundles } from './collect.js';

export { collectImageBundles };

export interface SyncOptions {
  spoolDir: string;
  stateDir?: string;
  log: EventLogger;
  prefix?: string;
  startPolicy?: StartPolicy;
  updatePolicy?: UpdatePolicy;
  removePolicy?: RemovePolicy;
  driftPolicy?: DriftPolicy;
  strict?: boolean;
  bindAllowList?: readonly string[];
  hostDeviceAllowList?: HostDeviceAllowList;
  allowDevices?: boolean;
  unpackLimits?: { maxBytes: number; maxEntries: number };
  concurrency?: number;
  stopTimeoutMs?: number;
  attempts?: number;
  retryDelayMs?: number;
  locks?: DomainLocks;
}

export interface SyncResult {
  plan: PlanItem[];
  results: ItemResult[];
  failed: ItemResult[];
  /** Image bundle directories removed from the state directory. */
  collected: string[];
  durationMs: number;
}

export const STATUS_FILE = 'status.json';

/** The pending-start markers of a pass (in the state directory), when it has one. */
export function pendingStartsOf(opts: SyncOptions): PendingStarts | undefined {
  return opts.stateDir === undefined ? undefined : new PendingStarts(join(opts.stateDir, 'pending-start'));
}

/** The hand edits already logged (in the state directory), when the pass has one. */
export function handEditsOf(opts: SyncOptions): HandEdits | undefined {
  return opts.stateDir === undefined ? undefined : new HandEdits(join(opts.stateDir, 'hand-edits'));
}

/** Desired and actual state and the plan between them; reads only. */
export async function computeSyncPlan(port: LibvirtPort, opts: SyncOptions): Promise<PlanItem[]> {
  const [want, have] = await Promise.all([
    desiredState(opts.spoolDir, {
      ...(opts.prefix !== undefined ? { prefix: opts.prefix } : {}),
      ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
      ...(opts.startPolicy !== undefined ? { startPolicy: opts.startPolicy } : {}),
      ...(opts.strict !== undefined ? { strict: opts.strict } : {}),
      ...(opts.bindAllowList !== undefined ? { bindAllowList: opts.bindAllowList } : {}),
      ...(opts.hostDeviceAllowList !== undefined ? { hostDeviceAllowList: opts.hostDeviceAllowList } : {}),
      ...(opts.allowDevices !== undefined ? { allowDevices: opts.allowDevices } : {}),
      ...(opts.unpackLimits !== undefined ? { unpackLimits: opts.unpackLimits } : {}),
    }),
    actualState(port, opts.prefix ?? ''),
  ]);
  const pendingStarts = await pendingStartsOf(opts)?.list();
  const plan = computePlan(want, have, {
    ...(opts.removePolicy !== undefined ? { removePolicy: opts.removePolicy } : {}),
    ...(opts.driftPolicy !== undefined ? { driftPolicy: opts.driftPolicy } : {}),
    ...(pendingStarts !== undefined ? { pendingStarts } : {}),
  });
  opts.log.info('plan.computed', {
    create: plan.filter((i) => i.action === 'create').length,
    update: plan.filter((i) => i.action === 'update').length,
    start: plan.filter((i) => i.action === 'start').length,
    delete: plan.filter((i) => i.action === 'delete').length,
    nothing: plan.filter((i) => i.action === 'nothing').length,
    fail: plan.filter((i) => i.action === 'fail').length,
  });
  return plan;
}

export async function syncOnce(port: LibvirtPort, opts: SyncOptions): Promise<SyncResult> {
  const t0 = Date.now();
  const plan = await computeSyncPlan(port, opts);
  const pendingStarts = pendingStartsOf(opts);
  const handEdits = handEditsOf(opts);
  const results = await applyPlan(port, plan, {
    log: opts.log,
    ...(pendingStarts !== undefined ? { pendingStarts } : {}),
    ...(handEdits !== undefined ? { handEdits } : {}),
    ...(opts.updatePolicy !== undefined ? { updatePolicy: opts.updatePolicy } : {}),
    ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
    ...(opts.stopTimeoutMs !== undefined ? { stopTimeoutMs: opts.stopTimeoutMs } : {}),
    ...(opts.attempts !== undefined ? { attempts: opts.attempts } : {}),
    ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
    ...(opts.locks !== undefined ? { locks: opts.locks } : {}),
  });
  const collected = opts.stateDir !== undefined ? await collectImageBundles(port, opts.stateDir, results, opts.log) : [];
  if (pendingStarts !== undefined) {
    // markers of domains this pass no longer knows (entry and domain gone) are stale
    const known = new Set(results.filter((r) => !(r.item.action === 'delete' && r.ok)).map((r) => r.item.domain));
    for (const name of await pendingStarts.list()) if (!known.has(name)) await pendingStarts.remove(name);
  }
  if (opts.stateDir !== undefined) await writeStatus(opts.stateDir, results);
  const failed = results.filter((r) => !r.ok);
  const durationMs = Date.now() - t0;
  opts.log.info('sync.completed', {
    durationMs,
    entries: results.filter((r) => r.item.action !== 'delete').length,
    changed: results.filter((r) => r.ok && r.item.action !== 'nothing' && r.item.action !== 'fail').length,
    failed: failed.length,
  });
  return { plan, results, failed, collected, durationMs };
}

export interface EntryStatus {
  entry: string;
  domain: string;
  action: string;
  result: 'ok' | 'pending' | 'failed';
  reason: string;
  error?: string;
  at: string;
}

/** `<stateDir>/status.json`, written atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeStatus(stateDir: string, results: readonly ItemResult[]): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const at = new Date().toISOString();
  const entries: EntryStatus[] = results.map((r) => ({
    entry: r.item.entry,
    domain: r.item.domain,
    action: r.item.action,
    result: !r.ok ? 'failed' : r.pending ? 'pending' : 'ok',
    reason: r.item.reason,
    ...(r.error !== undefined ? { error: r.error } : {}),
    at,
  }));
  const target = join(stateDir, STATUS_FILE);
  const tmp = join(stateDir, `.${STATUS_FILE}.${process.pid}.tmp`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify({ updated: at, entries }, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, target);
  const d = await open(stateDir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
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
    allowDevices: boolean;
    unpackLimits: { maxBytes: number; maxEntries: number };
    concurrency: number;
    stopTimeoutSec: number;
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
    allowDevices: config.allowDevices,
    unpackLimits: config.unpackLimits,
    concurrency: config.concurrency,
    stopTimeoutMs: config.stopTimeoutSec * 1000,
  };
}
