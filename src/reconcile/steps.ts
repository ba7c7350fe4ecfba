/**
 * Every step of a pass about one entry (reading and unpacking it, applying its plan item) runs
 * bounded: it gets an AbortSignal that fires at its deadline or when the whole pass is cancelled
 * (SIGTERM), and the pass stops waiting for it then, whether or not the step noticed (a call
 * stuck inside libvirt cannot be interrupted). The daemon also gives each step a patience: a
 * step still running after it goes on without the pass, which finishes its other entries and
 * serves the next; the entry is taken again once its step has ended.
 */
import { systemClock, type Clock } from '../clock.js';

/** A step ran past its deadline and was aborted: a failure of its entry alone. */
export class StepTimeoutError extends Error {
  override name = 'StepTimeoutError';
}

/** The pass was cancelled (the daemon is stopping). */
export class PassCancelledError extends Error {
  override name = 'PassCancelledError';
}

export interface StepBudget {
  /** A step is aborted, and fails its entry, after this long. */
  deadlineMs: number;
  /** How long the pass waits for one step before it goes on without it; undefined: up to its deadline. */
  patienceMs?: number;
  /** Aborts every step (the daemon stopping). */
  signal?: AbortSignal;
  clock?: Clock;
  /**
   * The pass stopped waiting for a step that has not ended: its patience ran out, or its signal
   * fired and it has not stopped yet. `ended` resolves once it really has: with undefined when
   * it finished, else with its error (the abort's reason when it was aborted).
   */
  onDetach?: (entry: string, ended: Promise<unknown>) => void;
}

/** What a step the pass stopped waiting for returns. */
export const DETACHED = Symbol('detached');

/**
 * Runs `work` for `entry` within `budget` (no budget: unbounded, as before). Resolves with its
 * result, or DETACHED once the patience is over; rejects with its error, or with a
 * StepTimeoutError / PassCancelledError as soon as its signal fires.
 */
export async function runStep<T>(
  budget: StepBudget | undefined,
  entry: string,
  what: string,
  work: (signal: AbortSignal | undefined) => Promise<T>,
): Promise<T | typeof DETACHED> {
  if (budget === undefined) return work(undefined);
  const clock = budget.clock ?? systemClock;
  const ctl = new AbortController();
  const cancel = () => ctl.abort(new PassCancelledError(`${what}: cancelled, the daemon is stopping`));
  if (budget.signal?.aborted) cancel();
  budget.signal?.addEventListener('abort', cancel, { once: true });
  const deadline = clock.setTimeout(() => ctl.abort(new StepTimeoutError(`${what}: not done within ${budget.deadlineMs} ms; aborted`)), budget.deadlineMs);
  const aborted = new Promise<never>((_, reject) => {
    if (ctl.signal.aborted) reject(ctl.signal.reason as Error);
    else ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason as Error), { once: true });
  });
  aborted.catch(() => undefined);
  let done = false;
  const running = Promise.resolve()
    .then(() => work(ctl.signal))
    .finally(() => {
      done = true;
      clock.clearTimeout(deadline);
      budget.signal?.removeEventListener('abort', cancel);
    });
  const ended = running.then(
    () => (ctl.signal.aborted ? (ctl.signal.reason as Error) : undefined),
    (e: unknown) => (ctl.signal.aborted ? (ctl.signal.reason as Error) : e),
  );
  const detach = () => {
    if (!done) budget.onDetach?.(entry, ended);
  };
  const bounded = Promise.race([running, aborted]);
  let patience: ReturnType<Clock['setTimeout']> | undefined;
  const impatient =
    budget.patienceMs === undefined || budget.patienceMs >= budget.deadlineMs
      ? new Promise<never>(() => undefined)
      : new Promise<typeof DETACHED>((resolve) => (patience = clock.setTimeout(() => resolve(DETACHED), budget.patienceMs!)));
  try {
    const out = await Promise.race([bounded, impatient]);
    if (out === DETACHED) detach();
    return out;
  } catch (e) {
    if (ctl.signal.aborted) detach();
    throw e;
  } finally {
    clock.clearTimeout(patience);
  }
}
