/**
 * Applying a plan: one worker per domain at a time (locks shared across passes), up to
 * `concurrency` domains at once; a failing item is retried with backoff and then reported,
 * never blocking the others. Items that stop a domain (removals, and updates under the `restart`
 * policy) mostly wait for it to shut off: they run in a pool of their own, all at once (up to
 * STOP_CONCURRENCY), so a container that takes its whole stop timeout delays no other; with a step
 * budget (the daemon) the pass does not wait for them either.
 */
import { sleep, systemClock, type Clock } from '../clock.js';
import type { UpdatePolicy } from '../config/index.js';
import { readOwnership } from '../convert/ownership.js';
import { errorMessage, InputError, isInputError } from '../errors.js';
import { parseDomainXml } from '../xml/parse.js';
import { LibvirtUnavailableError, type LibvirtPort } from '../libvirt/port.js';
import type { LiveTuning } from './live.js';
import type { EventLogger } from '../log.js';
import type { HandEdits } from './hand-edits.js';
import type { PendingChanges, PendingStarts } from './pending.js';
import type { PlanItem } from './plan.js';
import type { AddressBook } from '../network/addresses.js';
import { DETACHED, runStep, type StepBudget } from './steps.js';
import { startChecked } from './start-check.js';
import { stopDomain } from './stop.js';
import { prepareContainer, removeContainer } from '../shim/containers.js';

export interface ApplyOptions {
  log: EventLogger;
  updatePolicy?: UpdatePolicy;
  concurrency?: number;
  /** Time between the stop signal and the destroy (restart and undefine), unless the entry's settings say otherwise. */
  stopTimeoutMs?: number;
  /** Tries per item, the first included. */
  attempts?: number;
  retryDelayMs?: number;
  locks?: DomainLocks;
  pendingStarts?: PendingStarts;
  /** Parts of a running domain's new definition that wait for its next start (shown by `status`). */
  pendingChanges?: PendingChanges;
  /** Hand edits already logged (without it, a kept hand edit is logged at every pass). */
  handEdits?: HandEdits;
  /** Retry delays run on it (a fake one in tests). */
  clock?: Clock;
  /** Each item's deadline and patience (steps.ts); without it an item takes as long as it takes. */
  steps?: StepBudget;
  /** Network addresses: an undefined domain's are given back. */
  addresses?: Pick<AddressBook, 'release'>;
  /** Where the init shim's per-domain directories are (src/shim/): an undefined domain's are removed. */
  stateDir?: string;
}

export interface ItemResult {
  item: PlanItem;
  ok: boolean;
  error?: string;
  attempts: number;
  /** update of a running domain: (part of) the change waits for the next start. */
  pending?: boolean;
  /** Still being applied when the pass stopped waiting for it (its outcome is the next pass's). */
  busy?: boolean;
}

/** Serializes work per domain name, across concurrent passes. */
export class DomainLocks {
  private readonly tails = new Map<string, Promise<unknown>>();
  /** Work on `name` is running or queued (e.g. ocivirt itself stopping it). */
  busy(name: string): boolean {
    return this.tails.has(name);
  }
  run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(name) ?? Promise.resolve();
    const result = prev.then(fn, fn);
    const tail = result.catch(() => undefined);
    this.tails.set(name, tail);
    void tail.then(() => {
      if (this.tails.get(name) === tail) this.tails.delete(name);
    });
    return result;
  }
}

/** Items that stop a domain at once, at most (they mostly wait for it to shut off). */
export const STOP_CONCURRENCY = 64;

export async function applyPlan(port: LibvirtPort, plan: readonly PlanItem[], opts: ApplyOptions): Promise<ItemResult[]> {
  const locks = opts.locks ?? new DomainLocks();
  const results = new Array<ItemResult>(plan.length);
  const stopping: number[] = [];
  const others: number[] = [];
  for (const [i, item] of plan.entries()) (stops(item, opts) ? stopping : others).push(i);
  const pool = async (indices: number[], width: number, itemOpts: ApplyOptions) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(width, indices.length) }, async () => {
        while (next < indices.length) {
          const i = indices[next++]!;
          results[i] = await boundedItem(port, plan[i]!, itemOpts, locks);
        }
      }),
    );
  };
  // With a step budget (the daemon) the pass does not wait for a stop at all: it goes on at once
  // and the next pass reads the outcome, so a removal that comes a moment later (in the next pass)
  // is not held up by the stop timeouts of this one's.
  const stopOpts = opts.steps === undefined ? opts : { ...opts, steps: { ...opts.steps, patienceMs: 0 } };
  await Promise.all([pool(others, opts.concurrency ?? 4, opts), pool(stopping, Math.max(STOP_CONCURRENCY, opts.concurrency ?? 4), stopOpts)]);
  return results;
}

/** The item may stop its domain: a removal, or an update under the restart policy. */
function stops(item: PlanItem, opts: ApplyOptions): boolean {
  return item.action === 'delete' || (item.action === 'update' && updatePolicyOf(item, opts) === 'restart');
}

/** The entry's own update policy, else the daemon's; `live` by default. */
function updatePolicyOf(item: PlanItem, opts: ApplyOptions): UpdatePolicy {
  return item.updatePolicy ?? opts.updatePolicy ?? 'live';
}

/**
 * One item within its budget. The domain's lock is held by the work itself, so an item the pass
 * stopped waiting for still keeps the next work on that domain out until it has really ended.
 */
async function boundedItem(port: LibvirtPort, item: PlanItem, opts: ApplyOptions, locks: DomainLocks): Promise<ItemResult> {
  const work = (signal: AbortSignal | undefined) => {
    if (item.domain === '') return applyItem(port, item, opts, signal);
    return locks.run(item.domain, () => {
      signal?.throwIfAborted(); // waited for the lock past its deadline: too late to act
      return applyItem(port, item, opts, signal);
    });
  };
  try {
    const r = await runStep(opts.steps, item.entry, `${item.action} ${item.domain}`, work);
    return r === DETACHED ? { item, ok: true, attempts: 0, pending: true, busy: true } : r;
  } catch (e) {
    const err = errorMessage(e);
    opts.log.error('entry.failed', { entry: item.entry, domain: item.domain, action: item.action, err }, err);
    return { item, ok: false, error: err, attempts: 0 };
  }
}

async function applyItem(port: LibvirtPort, item: PlanItem, opts: ApplyOptions, signal?: AbortSignal): Promise<ItemResult> {
  const log = opts.log;
  const fields = { entry: item.entry, domain: item.domain, ...(item.digest !== undefined ? { digest: item.digest } : {}) };
  if (item.action === 'fail') {
    log.error('entry.failed', { ...fields, err: item.reason }, item.reason);
    return { item, ok: false, error: item.reason, attempts: 0 };
  }
  if (item.action === 'nothing') {
    if (item.handEdit) await reportHandEdit(item, opts, fields);
    else {
      log.debug('domain.unchanged', { ...fields, reason: item.reason });
      if (item.domain !== '') await opts.handEdits?.forget(item.domain);
    }
    return { item, ok: true, attempts: 0 };
  }
  if (item.handEdit) await reportHandEdit(item, opts, fields);
  const maxAttempts = opts.attempts ?? 3;
  const steps = new Set<string>(); // done in an earlier attempt: not repeated
  let attempt = 0;
  for (;;) {
    attempt += 1;
    const t0 = Date.now();
    try {
      const pending = await act(port, item, opts, steps, fields, signal);
      // redefined from the spool, or gone (a kept hand edit whose pending start ran is still there)
      if (item.handEdit?.policy !== 'keep') await opts.handEdits?.forget(item.domain);
      return { item, ok: true, attempts: attempt, ...(pending ? { pending } : {}) };
    } catch (e) {
      const err = errorMessage(e);
      if (signal?.aborted) return { item, ok: false, error: errorMessage(signal.reason), attempts: attempt }; // reported by boundedItem
      if (attempt >= maxAttempts || isInputError(e)) {
        log.error('entry.failed', { ...fields, action: item.action, attempts: attempt, durationMs: Date.now() - t0, err }, err);
        return { item, ok: false, error: err, attempts: attempt };
      }
      try {
        await sleep(opts.clock ?? systemClock, (opts.retryDelayMs ?? 250) * 2 ** (attempt - 1), signal);
      } catch {
        return { item, ok: false, error: errorMessage(signal!.reason), attempts: attempt };
      }
    }
  }
}

/** One attempt; `steps` remembers what already succeeded. Returns true when a change is pending. */
async function act(
  port: LibvirtPort,
  item: PlanItem,
  opts: ApplyOptions,
  steps: Set<string>,
  fields: Record<string, unknown>,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const log = opts.log;
  const stopOpts = { log, defaultTimeoutMs: opts.stopTimeoutMs ?? 30_000, clock: opts.clock, signal };
  const once = async (step: string, fn: () => Promise<void>): Promise<void> => {
    if (steps.has(step)) return;
    signal?.throwIfAborted(); // aborted: no further step begins
    await fn();
    steps.add(step);
  };
  switch (item.action) {
    case 'create': {
      if (item.start) await once('mark', async () => opts.pendingStarts?.add(item.domain));
      await once('define', async () => {
        await refuseIfTaken(port, item);
        const t0 = Date.now();
        await prepareContainer(parseDomainXml(item.xml!));
        await port.define(item.xml!);
        log.info('domain.defined', { ...fields, durationMs: Date.now() - t0 });
      });
      if (item.start) await once('start', () => startDomain(port, item, opts, fields, 'new entry'));
      return false;
    }
    case 'start': {
      await once('start', () => startDomain(port, item, opts, fields, item.reason));
      return false;
    }
    case 'update': {
      await once('define', async () => {
        const running = (await port.state(item.domain)) === 'running';
        const t0 = Date.now();
        // a new version directory: a running container keeps the one it was started with
        await prepareContainer(parseDomainXml(item.xml!));
        await port.define(item.xml!);
        log.info('domain.redefined', { ...fields, changes: item.differences, durationMs: Date.now() - t0 });
        if (running) steps.add('was-running');
      });
      if (!steps.has('was-running')) {
        if (item.start) await once('start', () => startDomain(port, item, opts, fields, 'pending start'));
        return false;
      }
      const policy = updatePolicyOf(item, opts);
      if (policy !== 'restart') {
        // without the plan's split (not computed): all of it waits
        const split = item.live ?? { tuning: [], live: [], pending: item.differences ?? ['definition'] };
        const pending = policy === 'live' ? split.pending : [...split.live, ...split.pending];
        if (policy === 'live') await once('live', () => setLiveTuning(port, item.domain, split.tuning));
        await once('pending', async () => opts.pendingChanges?.add(item.domain, pending));
        if (policy === 'live') log.info('domain.updated', { ...fields, live: split.live, pending });
        else if (pending.length > 0) log.info('domain.pending', { ...fields, pending, reason: 'running; the new definition applies at the next start' });
        return pending.length > 0;
      }
      await once('stop', async () => {
        await stopDomain(port, item.domain, { ...stopOpts, fields: { ...fields, reason: 'restart policy: definition changed' } });
      });
      await once('start', async () => {
        await startChecked(port, item.domain);
        log.info('domain.started', { ...fields, reason: 'restart policy: definition changed' });
      });
      await opts.pendingChanges?.remove(item.domain);
      return false;
    }
    case 'delete': {
      await once('stop', async () => {
        await stopDomain(port, item.domain, { ...stopOpts, fields: { ...fields, reason: item.reason } });
      });
      await once('undefine', async () => {
        await port.undefine(item.domain);
        log.info('domain.undefined', { ...fields, reason: item.reason });
      });
      if (opts.stateDir !== undefined) await once('containerDir', () => removeContainer(opts.stateDir!, item.domain));
      await opts.addresses?.release(item.domain);
      await opts.pendingStarts?.remove(item.domain);
      await opts.pendingChanges?.remove(item.domain);
      return false;
    }
    default:
      return false; // 'nothing' and 'fail' never reach here
  }
}

/**
 * A domain of that name that appeared since the plan (another instance, or by hand) is not
 * redefined over: a define by the same name would replace it. Ours (a retried define that did
 * go through) is fine. The next pass sees it and decides.
 */
async function refuseIfTaken(port: LibvirtPort, item: PlanItem): Promise<void> {
  if ((await port.lookup(item.domain)) === undefined) return;
  const instanceOf = (xml: string) => {
    try {
      return readOwnership(parseDomainXml(xml))?.instance;
    } catch {
      return undefined;
    }
  };
  const theirs = instanceOf(await port.inactiveXml(item.domain));
  if (theirs === undefined || theirs !== instanceOf(item.xml!))
    throw new InputError(`domain '${item.domain}' appeared since this pass planned it (another instance, or by hand); it is left alone until the next pass`);
}

/** `domain.drifted`, once per distinct hand edit (the digest of what libvirt has). */
async function reportHandEdit(item: PlanItem, opts: ApplyOptions, fields: Record<string, unknown>): Promise<void> {
  const { actualDigest, policy } = item.handEdit!;
  if ((await opts.handEdits?.logged(item.domain)) === actualDigest) return;
  opts.log.warn(
    'domain.drifted',
    { ...fields, policy, actualDigest, differences: item.differences ?? [] },
    `${item.domain} was changed in libvirt by hand; ${policy === 'keep' ? 'kept' : 'reverting to the spool'} (driftPolicy ${policy})`,
  );
  if (policy === 'keep') await opts.handEdits?.remember(item.domain, actualDigest);
}

/** Starts a domain unless it already runs, then drops its pending-start marker. */
async function startDomain(port: LibvirtPort, item: PlanItem, opts: ApplyOptions, fields: Record<string, unknown>, reason: string): Promise<void> {
  if ((await port.state(item.domain)) !== 'running') {
    const t0 = Date.now();
    await startChecked(port, item.domain);
    opts.log.info('domain.started', { ...fields, reason, durationMs: Date.now() - t0 });
  }
  await opts.pendingStarts?.remove(item.domain);
  await opts.pendingChanges?.remove(item.domain);
}

/**
 * Tuning set on the running domain (its definition already has it: the redefine wrote it). A
 * domain that stopped meanwhile takes the new definition at its start anyway.
 */
async function setLiveTuning(port: LibvirtPort, domain: string, tuning: readonly LiveTuning[]): Promise<void> {
  for (const t of tuning) {
    try {
      await port.setTuning(domain, t.family, t.params, 'live');
    } catch (e) {
      if (!(e instanceof LibvirtUnavailableError) && (await port.state(domain)) !== 'running') return;
      throw e;
    }
  }
}

