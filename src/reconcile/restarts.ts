/**
 * Restart policies (`no`, `always`, `on-failure[:N]`; an entry's settings `restart`, else the
 * daemon's `restartPolicy`) and what the daemon keeps about each domain's restarts: one JSON file
 * per domain in `<state>/restarts/`, replaced atomically, so the count and the backoff survive a
 * daemon restart. The decision after an exit is a pure function (`afterExit`); the daemon's
 * supervisor (daemon/restarts.ts) hears the exits and runs the restarts.
 */
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomically } from '../fsroot/atomic.js';
import { RECORDED_PREFIX, RESTART } from '../settings/keys.js';
import { parseDomainXml } from '../xml/parse.js';
import type { ProcessState } from './exit-status.js';

export type RestartPolicy = { mode: 'no' } | { mode: 'always' } | { mode: 'on-failure'; max?: number };

export const SETTINGS_RESTART_ANNOTATION = `${RECORDED_PREFIX}restart`;

export function parseRestartPolicy(text: string): RestartPolicy | undefined {
  if (!RESTART.test(text)) return undefined;
  if (text === 'no' || text === 'always') return { mode: text };
  const max = text.split(':')[1];
  return max === undefined ? { mode: 'on-failure' } : { mode: 'on-failure', max: Number(max) };
}

export function restartPolicyText(p: RestartPolicy): string {
  return p.mode === 'on-failure' && p.max !== undefined ? `on-failure:${p.max}` : p.mode;
}

/** The policy of a domain: its entry's settings (recorded in its definition), else `fallback`. */
export function restartPolicyOf(xml: string | undefined, fallback: RestartPolicy): RestartPolicy {
  if (xml === undefined) return fallback;
  try {
    const asked = parseDomainXml(xml).metadata.ours?.annotations?.find((a) => a.key === SETTINGS_RESTART_ANNOTATION)?.value;
    return (asked !== undefined ? parseRestartPolicy(asked) : undefined) ?? fallback;
  } catch {
    return fallback;
  }
}

export interface Backoff {
  /** The first restart's delay; each quick restart doubles it. */
  baseMs: number;
  /** The cap of the delay; a run at least this long resets the backoff. */
  maxMs: number;
  /** This many quick restarts in a row make the domain crash-looping (restarted at the cap). */
  crashLoopAfter: number;
}

/** What a domain's restarts are at: the outcome of its last exit. */
export type RestartOutcome = 'restarting' | 'crash-looping' | 'exited' | 'gave-up' | 'held';

export interface RestartRecord {
  /** Restarts made by the policy since the domain was last started by anyone else. */
  restarts: number;
  /** Restarts in a row after runs shorter than the backoff's cap: the backoff's exponent. */
  quick: number;
  outcome?: RestartOutcome;
  /** When the last outcome began (ms since the epoch). */
  since: number;
  /** The planned restart (ms since the epoch). */
  nextAt?: number;
  /** The mtime of the status file whose exit was dealt with: it is not dealt with twice. */
  handled?: number;
  /** When the current (or last) run began, as the daemon heard it. */
  startedAt?: number;
  /** The last exit of the process. */
  exit?: { exitCode: number | null; signal: number | null; setupFailed?: string };
  /** A start by the policy is under way: its start event does not reset the count. */
  policyStart?: boolean;
}

export type Decision =
  | { action: 'restart'; delayMs: number; crashLooping: boolean }
  | { action: 'stay'; outcome: 'exited' | 'gave-up'; why: string };

/** The process exited with `exitCode` 0: the one success; a signal or a refused setup are failures. */
export function failed(state: ProcessState): boolean {
  return !(state.kind === 'exited' && state.code === 0);
}

/**
 * After the process ended by itself: restart (and when), or stay down. `ranMs`: how long it ran
 * (Infinity when unknown). Returns the record as it is after the decision.
 */
export function afterExit(policy: RestartPolicy, state: ProcessState, rec: RestartRecord, now: number, ranMs: number, b: Backoff): { decision: Decision; record: RestartRecord } {
  const exit = exitOf(state);
  const stay = (outcome: 'exited' | 'gave-up', why: string) => ({
    decision: { action: 'stay' as const, outcome, why },
    record: { restarts: rec.restarts, quick: 0, outcome, since: now, exit, ...(rec.startedAt !== undefined ? { startedAt: rec.startedAt } : {}) },
  });
  if (policy.mode === 'no') return stay('exited', 'restart policy no');
  if (policy.mode === 'on-failure' && !failed(state)) return stay('exited', 'exited 0 (restart policy on-failure)');
  if (policy.mode === 'on-failure' && policy.max !== undefined && rec.restarts >= policy.max)
    return stay('gave-up', `gave up after ${rec.restarts} restart${rec.restarts === 1 ? '' : 's'} (restart policy ${restartPolicyText(policy)})`);
  const before = ranMs >= b.maxMs ? 0 : rec.quick;
  const quick = before + 1;
  const crashLooping = quick > b.crashLoopAfter;
  const delayMs = crashLooping ? b.maxMs : Math.min(b.baseMs * 2 ** Math.min(before, 40), b.maxMs);
  return {
    decision: { action: 'restart', delayMs, crashLooping },
    record: {
      restarts: rec.restarts,
      quick,
      outcome: crashLooping ? 'crash-looping' : 'restarting',
      since: rec.outcome === 'crash-looping' && crashLooping ? rec.since : now,
      nextAt: now + delayMs,
      exit,
      ...(rec.startedAt !== undefined ? { startedAt: rec.startedAt } : {}),
    },
  };
}

export function exitOf(state: ProcessState): RestartRecord['exit'] {
  if (state.kind === 'exited') return { exitCode: state.code, signal: null };
  if (state.kind === 'signaled') return { exitCode: null, signal: state.signal };
  if (state.kind === 'setup-failed') return { exitCode: null, signal: null, setupFailed: state.reason ?? 'setup failed' };
  return undefined;
}

/**
 * A record as put writes it: its counts and times are finite numbers (a damaged one would reach a
 * timer or a date and throw there), so anything else starts over.
 */
function isRestartRecord(r: unknown): r is RestartRecord {
  if (typeof r !== 'object' || r === null) return false;
  const x = r as Record<string, unknown>;
  const count = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const time = (v: unknown) => v === undefined || Number.isFinite(v);
  return count(x.restarts) && count(x.quick) && Number.isFinite(x.since) && time(x.nextAt) && time(x.handled) && time(x.startedAt);
}

/** `<state>/restarts/<domain>`: one record per domain. */
export class RestartRecords {
  constructor(private readonly dir: string) {}

  async get(domain: string): Promise<RestartRecord | undefined> {
    try {
      const r = JSON.parse(await readFile(join(this.dir, domain), 'utf8')) as unknown;
      return isRestartRecord(r) ? r : undefined;
    } catch {
      return undefined; // none, or unreadable: starts over
    }
  }

  async put(domain: string, r: RestartRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomically(join(this.dir, domain), JSON.stringify(r) + '\n', 0o600);
  }

  async remove(domain: string): Promise<void> {
    await rm(join(this.dir, domain), { force: true });
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((n) => !n.startsWith('.'));
    } catch {
      return [];
    }
  }
}

export function restartRecordsOf(stateDir: string): RestartRecords {
  return new RestartRecords(join(stateDir, 'restarts'));
}
